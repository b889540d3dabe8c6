package imap

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
)

// halfClose shuts the client's write side and reads until the server
// closes; it returns what was read and how long the close took.
func (c *client) halfClose() (string, time.Duration) {
	c.t.Helper()
	start := time.Now()
	if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
		c.t.Fatal(err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c.br)
	if err != nil {
		c.t.Fatalf("read until close: %v (read %q)", err, b)
	}
	return string(b), time.Since(start)
}

// TestHalfCloseDrainsUpstream: after the client's end of stream the
// upstream's answers still reach it. Over plain TCP the end of stream is
// passed on (the fake upstream then stops at once). Over TLS, when the
// client's last bytes are unanswered, the drain ends once the upstream
// has been quiet for drainQuiet, and any drain ends after drainMax; when
// everything was answered, the session ends at once.
func TestHalfCloseDrainsUpstream(t *testing.T) {
	const quiet, maxDrain = 300 * time.Millisecond, 1500 * time.Millisecond
	for _, tt := range []struct {
		name, mode, cmds string
		answered         string // read before the half-close
		last             string // sent just before it, left unanswered
		want             []string
		ticks            int // "* OK tick" lines wanted at least
		min, max         time.Duration
	}{
		{"plain upstream", upstream.ModeNone, "b NOOP\r\n", "", "",
			[]string{"b OK NOOP done"}, 0, 0, quiet},
		{"TLS upstream, quiet", upstream.ModeSTARTTLS, "c TICK 3\r\n", "c OK TICK started", "d NO",
			nil, 3, 300 * time.Millisecond, 300*time.Millisecond + quiet + 500*time.Millisecond},
		{"TLS upstream, never quiet", upstream.ModeSTARTTLS, "c TICK 100\r\n", "c OK TICK started", "d NO",
			nil, 10, maxDrain, maxDrain + 500*time.Millisecond},
		// A client that leaves with everything answered (the usual end)
		// does not hold the session for the quiet period.
		{"TLS upstream, nothing pending", upstream.ModeSTARTTLS, "b NOOP\r\n", "b OK NOOP done", "",
			nil, 0, 0, quiet / 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{upMode: tt.mode, mutate: func(o *Options) {
				o.drainQuiet, o.drainMax = quiet, maxDrain
			}})
			c := e.dial()
			c.expect("* OK")
			c.send("a LOGIN alice " + e.secret["alice"] + "\r\n" + tt.cmds)
			c.expect("a OK")
			if tt.answered != "" {
				c.expect(tt.answered)
			}
			if tt.last != "" {
				c.send(tt.last)
			}
			out, took := c.halfClose()
			for _, w := range tt.want {
				if !strings.Contains(out, w+"\r\n") {
					t.Errorf("got %q, want %q in it", out, w)
				}
			}
			if n := strings.Count(out, "* OK tick\r\n"); n < tt.ticks {
				t.Errorf("got %d ticks, want at least %d", n, tt.ticks)
			}
			if took < tt.min || took > tt.max {
				t.Errorf("closed after %v, want between %v and %v", took, tt.min, tt.max)
			}
			if !waitFor(2*time.Second, func() bool { return len(e.reg.List("")) == 0 }) {
				t.Error("session still registered")
			}
		})
	}
}
