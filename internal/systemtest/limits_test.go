package systemtest

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
)

// TestConnectionLimits: limits.max_connections_per_ip refuses the N+1st
// connection with * BYE; limits.preauth_timeout closes an idle
// unauthenticated connection; afterwards no goroutine or fd is left over.
func TestConnectionLimits(t *testing.T) {
	const perIP = 4
	lg := StartLegate(t, LegateOptions{Mutate: func(c *config.Config) {
		c.Policy.AllowPlaintextLoopback = true
		c.Limits.MaxConnectionsPerIP = perIP
		c.Limits.PreauthTimeout = config.Duration(time.Second)
	}})
	addr := lg.AddrOf(t, "imap")
	// Warm up (first-use allocations, listener goroutines), then measure.
	c0, _ := DialIMAP(t, addr, nil)
	c0.Conn.Close()
	time.Sleep(100 * time.Millisecond)
	base := measure(t)

	var held []*RawIMAP
	for i := 0; i < perIP; i++ {
		c, greeting := DialIMAP(t, addr, nil)
		if !strings.HasPrefix(greeting, "* OK") {
			t.Fatalf("connection %d: greeting %q, want * OK", i+1, greeting)
		}
		held = append(held, c)
	}
	over, greeting := DialIMAP(t, addr, nil)
	if !strings.HasPrefix(greeting, "* BYE") {
		t.Errorf("connection %d (over the limit of %d): got %q, want * BYE", perIP+1, perIP, greeting)
	}
	if l, err := over.ReadLine(2 * time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("connection over the limit after BYE: got %q, %v; want closed (EOF)", l, err)
	}
	// The limit is shared across protocols: submission is refused too.
	sc, err := net.DialTimeout("tcp", lg.AddrOf(t, "submission"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sr := &RawIMAP{Conn: sc, r: newReader(sc)}
	if l, _ := sr.ReadLine(3 * time.Second); strings.HasPrefix(l, "220") {
		t.Errorf("submission while the IP holds %d connections: got greeting %q, want refused", perIP, l)
	}
	sc.Close()

	// Pre-auth timeout: the held connections have been idle; within about
	// a second each gets BYE and is closed. One keeps talking until then.
	start := time.Now()
	for i, c := range held {
		var lines []string
		for {
			l, err := c.ReadLine(5 * time.Second)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("connection %d still open %v after preauth_timeout 1s", i+1, time.Since(start))
				}
				break
			}
			lines = append(lines, l)
		}
		if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "* BYE") {
			t.Errorf("idle connection %d: got %q before close, want * BYE", i+1, lines)
		}
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("idle connections closed after %v, want about 1s", el)
	}
	// Slots are released: a new connection is welcome again.
	c, greeting := DialIMAP(t, addr, nil)
	if !strings.HasPrefix(greeting, "* OK") {
		t.Errorf("after the others closed: greeting %q, want * OK", greeting)
	}
	c.Conn.Close()
	for _, c := range held {
		c.Conn.Close()
	}
	over.Conn.Close()

	after := waitSettled(t, base, 0, 0, 5*time.Second)
	t.Logf("goroutines %d -> %d, fds %d -> %d", base.Goroutines, after.Goroutines, base.FDs, after.FDs)
	if after.Goroutines > base.Goroutines || after.FDs > base.FDs {
		t.Errorf("after all connections closed: %d goroutines, %d fds; want at most the baseline %d, %d\n%s",
			after.Goroutines, after.FDs, base.Goroutines, base.FDs, goroutineDump())
	}
}
