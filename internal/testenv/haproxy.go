package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// HAProxy is a running haproxy in TCP mode (Debian haproxy).
type HAProxy struct {
	// Addrs are the frontends' addresses, in the order of the routes.
	Addrs []string
	dir   string
}

// HAProxyRoute is one frontend: Bind (a fresh 127.0.0.1 port if empty)
// forwarding to Server, a backend server line such as
// "127.0.0.1:1234 send-proxy-v2".
type HAProxyRoute struct {
	Bind, Server string
}

// StartHAProxy runs haproxy with one frontend per route until the test
// ends; its connections to the backends come from 127.0.0.1. Require(t, "haproxy") is called first.
func StartHAProxy(t testing.TB, routes ...HAProxyRoute) *HAProxy {
	t.Helper()
	Require(t, "haproxy")
	bin, err := LookPath("haproxy")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	h := &HAProxy{dir: TempDir(t)}
	var cfg strings.Builder
	cfg.WriteString("global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n")
	for i, r := range routes {
		addr := r.Bind
		if addr == "" {
			addr = FreeAddr(t)
		}
		h.Addrs = append(h.Addrs, addr)
		fmt.Fprintf(&cfg, "frontend f%d\n  bind %s\n  default_backend b%d\nbackend b%d\n  server s%d %s\n", i, addr, i, i, i, r.Server)
	}
	path := filepath.Join(h.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	out := filepath.Join(h.dir, "haproxy.out")
	p, err := startProcess("haproxy", exec.Command(bin, "-db", "-f", path), out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.stop(3 * time.Second)
		if t.Failed() {
			t.Logf("haproxy output:\n%s", tail(30, out))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.waitReady(ctx, h.Addrs...); err != nil {
		t.Fatalf("testenv: haproxy: %v\n%s", err, tail(30, out))
	}
	return h
}
