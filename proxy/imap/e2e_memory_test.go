package imap_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// rawLogin opens a session through Legate with a bare connection and
// returns it after the tagged OK.
func rawLogin(t *testing.T, addr, user, secret string, dial func(string) (net.Conn, error)) (net.Conn, string) {
	t.Helper()
	c, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "a LOGIN %s %s\r\n", user, secret)
	l, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "a OK [CAPABILITY ") {
		t.Fatalf("login: got %q, %v", l, err)
	}
	if br.Buffered() != 0 {
		t.Fatalf("unexpected bytes after login")
	}
	_ = c.SetDeadline(time.Time{})
	return c, l
}

// TestE2EIdleSessionMemory measures what an idle relayed session costs
// in this process: heap and stacks, goroutines and file descriptors. The
// in-process client's side of each connection is included, so the numbers
// are upper bounds.
func TestE2EIdleSessionMemory(t *testing.T) {
	e := newE2E(t)
	pol := policy.Default()
	pol.AllowPlaintextLoopback = true // to measure plain sessions too
	// Plain all the way (client and upstream), then TLS all the way.
	plainAddr, _ := e.legate(upstream.ModeNone, upstream.LoginAuthzid, pol)
	_, tlsAddr := e.legate(upstream.ModeImplicit, upstream.LoginAuthzid, pol)
	const n = 40
	// Targets: 16 KiB plain, 64 KiB TLS for Legate alone. Measured here
	// (client side included): about 5.5-7 KiB plain, 33-40 KiB TLS (the
	// client's own TLS connection is a good part of it); the budgets leave a
	// margin for GC noise.
	budget := map[string]int64{"plain": 10 << 10, "TLS": 48 << 10}
	dialPlain := func(a string) (net.Conn, error) { return net.Dial("tcp", a) }
	dialTLS := func(a string) (net.Conn, error) { return tls.Dial("tcp", a, e.certs.ClientTLS) }
	measure := func(name, addr string, dial func(string) (net.Conn, error)) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g0, fd0 := runtime.NumGoroutine(), countFDs()
		conns := make([]net.Conn, 0, n)
		for range n {
			c, caps := rawLogin(t, addr, "alice", e.secrets["alice"], dial)
			if !strings.Contains(caps, "IDLE") {
				t.Fatalf("post-login capabilities %q lack Dovecot's IDLE", caps)
			}
			conns = append(conns, c)
		}
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1, fd1 := runtime.NumGoroutine(), countFDs()
		mem := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / n
		t.Logf("%s idle session: %d bytes (heap+stacks), %.2f goroutines, %.2f fds per session (client side included)",
			name, mem, float64(g1-g0)/n, float64(fd1-fd0)/n)
		if g := float64(g1-g0) / n; g > 2.05 {
			t.Errorf("%s: got %.2f goroutines per idle session, want at most 2", name, g)
		}
		if limit := budget[name]; !raceEnabled && mem > limit {
			t.Errorf("%s: got %d bytes per idle session, want at most %d", name, mem, limit)
		}
		if f := float64(fd1-fd0) / n; f > 3.05 {
			t.Errorf("%s: got %.2f fds per idle session (1 client side + Legate's), want at most 3", name, f)
		}
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	measure("plain", plainAddr, dialPlain)
	measure("TLS", tlsAddr, dialTLS)
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}
