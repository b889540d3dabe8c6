package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/proxyproto"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store"
)

// recordingThrottle records the addresses the throttle is asked about and
// never blocks.
type recordingThrottle struct {
	mu  sync.Mutex
	ips []netip.Addr
}

func (r *recordingThrottle) Check(ip netip.Addr, _ string) (time.Duration, bool) {
	r.mu.Lock()
	r.ips = append(r.ips, ip)
	r.mu.Unlock()
	return 0, false
}
func (*recordingThrottle) Failure(netip.Addr, string) {}
func (*recordingThrottle) Success(netip.Addr, string) {}

func (r *recordingThrottle) list() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netip.Addr(nil), r.ips...)
}

// startHAProxy runs haproxy in TCP mode: each frontend (its address) goes
// to one backend server line (e.g. "127.0.0.1:1234 send-proxy-v2").
func startHAProxy(t *testing.T, routes map[string]string) {
	t.Helper()
	testenv.Require(t, "haproxy")
	bin, err := testenv.LookPath("haproxy")
	if err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	cfg.WriteString("global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n")
	i := 0
	for front, server := range routes {
		fmt.Fprintf(&cfg, "frontend f%d\n  bind %s\n  default_backend b%d\nbackend b%d\n  server s%d %s\n", i, front, i, i, i, server)
		i++
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path)
	out := &logintest.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		t.Logf("haproxy output:\n%s", out.String())
	})
	for front := range routes {
		if !waitFor(5*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", front, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		}) {
			t.Fatalf("haproxy does not listen on %s:\n%s", front, out.String())
		}
	}
}

// dialFrom connects from a given loopback address.
func dialFrom(t *testing.T, from, addr string, tlsCfg *tls.Config) *client {
	t.Helper()
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	var c net.Conn
	var err error
	if tlsCfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsCfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// TestHAProxyPassesClientAddress: HAProxy in front (send-proxy-v2 and
// send-proxy, plain with STARTTLS and implicit TLS after the header): a
// login from 127.0.0.2 through it is throttled, registered and audited
// under 127.0.0.2, not HAProxy's 127.0.0.1. A forged header sent
// directly from an untrusted address is refused.
func TestHAProxyPassesClientAddress(t *testing.T) {
	thr := &recordingThrottle{}
	e := newEnv(t, envOptions{throttle: thr})
	trusted := proxyproto.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Timeout: 2 * time.Second, Logger: testLogger(t)}
	serve := func(implicit bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pl := proxyproto.Listen(ln, trusted)
		if implicit {
			go e.srv.ServeTLS(pl)
		} else {
			go e.srv.Serve(pl)
		}
		return ln.Addr().String()
	}
	plain, implicit := serve(false), serve(true)
	v2Front, v1Front, tlsFront := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	startHAProxy(t, map[string]string{
		v2Front:  plain + " send-proxy-v2",
		v1Front:  plain + " send-proxy",
		tlsFront: implicit + " send-proxy-v2",
	})

	client := netip.MustParseAddr("127.0.0.2")
	for _, tt := range []struct {
		name, front   string
		tls, starttls bool
	}{
		{"v2, STARTTLS", v2Front, false, true},
		{"v1", v1Front, false, false},
		{"v2, implicit TLS", tlsFront, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var cfg *tls.Config
			if tt.tls {
				cfg = e.certs.ClientTLS
			}
			c := dialFrom(t, client.String(), tt.front, cfg)
			c.expect("* OK")
			if tt.starttls {
				c.startTLS(e.certs.ClientTLS)
			}
			c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
			c.expect("a OK [CAPABILITY")
			if !waitFor(2*time.Second, func() bool { return len(e.reg.List("alice")) == 1 }) {
				t.Fatal("session not registered")
			}
			if got := e.reg.List("alice")[0].IP; got != client {
				t.Errorf("session address: got %s, want %s", got, client)
			}
			c.send("z LOGOUT\r\n")
			c.expect("* BYE")
			if !waitFor(2*time.Second, func() bool { return len(e.reg.List("alice")) == 0 }) {
				t.Fatal("session did not end")
			}
		})
	}
	for _, ip := range thr.list() {
		if ip != client {
			t.Errorf("throttle asked about %s, want only %s", ip, client)
		}
	}
	if n := len(thr.list()); n != 3 {
		t.Errorf("throttle checks: got %d, want 3", n)
	}
	var recs []store.AuditRecord
	waitFor(3*time.Second, func() bool {
		recs, _ = e.st.AuditLog(context.Background(), store.AuditQuery{User: "alice"})
		return len(recs) >= 3
	})
	if len(recs) != 3 {
		t.Fatalf("audit records: got %d, want 3", len(recs))
	}
	for _, r := range recs {
		if r.IP != client.String() {
			t.Errorf("audit record %d: IP %q, want %s", r.Seq, r.IP, client)
		}
	}

	// A forged header from an address that is not trusted: the plaintext
	// listener refuses it, the implicit-TLS one fails the handshake.
	c := dialFrom(t, client.String(), plain, nil)
	c.send("PROXY TCP4 192.0.2.66 10.0.0.1 4444 143\r\n")
	c.expect("* OK")
	c.expect("* BYE PROXY header not accepted")
	c.expectClosed(2 * time.Second)
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(client.String())}}
	raw, err := d.Dial("tcp", implicit)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprint(raw, "PROXY TCP4 192.0.2.66 10.0.0.1 4444 993\r\n")
	tc := tls.Client(raw, e.certs.ClientTLS)
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Error("TLS handshake after a forged header: got success, want failure")
	}
	if n := len(thr.list()); n != 3 {
		t.Errorf("throttle checks after forged headers: got %d, want 3 (no login)", n)
	}
}
