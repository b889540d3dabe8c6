package imap

import (
	"fmt"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/connlimit"
	"github.com/legate-proxy/legate/internal/upstream"
)

// TestRelayModes runs a session through every combination of client and
// upstream transport: both relay directions read from plain sockets
// (waiting without a buffer) or from TLS (small then big buffers), with
// data bigger than the big buffer both ways. The session, once handed to
// the relay goroutines, keeps its connection-limit slot and registry
// entry until it ends, and logs its end with the connection's attributes.
func TestRelayModes(t *testing.T) {
	for _, clientTLS := range []bool{false, true} {
		for _, mode := range []string{upstream.ModeNone, upstream.ModeSTARTTLS, upstream.ModeImplicit} {
			name := fmt.Sprintf("client TLS %v, upstream %s", clientTLS, mode)
			t.Run(name, func(t *testing.T) {
				lim := connlimit.New(0, 1)
				var logs logintest.LogBuffer
				e := newEnv(t, envOptions{upMode: mode, mutate: func(o *Options) {
					o.Limiter = lim
					o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				}})
				c := e.dial
				if clientTLS {
					c = e.dialTLS
				}
				cl := c()
				cl.expect("* OK")
				cl.send(`i ID ("name" "Relay" "version" "1")` + "\r\n")
				cl.expect("* ID")
				cl.expect("i OK")
				cl.send("a LOGIN alice " + e.secret["alice"] + "\r\nb NOOP\r\n")
				cl.expect("a OK [CAPABILITY")
				cl.expect("b OK NOOP done")

				// The relayed session still holds its slot.
				other := e.dial()
				other.expect("* BYE Too many connections")

				const big = 100_000 // more than bigBuf, to the client
				cl.send(fmt.Sprintf("c BIG %d\r\n", big))
				if got, want := cl.readLine(), fmt.Sprintf("* 1 FETCH (BODY[] {%d}", big); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
				body := make([]byte, big+len(")\r\n"))
				_ = cl.c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := io.ReadFull(cl.br, body); err != nil {
					t.Fatalf("reading the literal: %v", err)
				}
				if want := strings.Repeat("y", big) + ")\r\n"; string(body) != want {
					t.Fatalf("literal: got %d bytes differing from the %d sent", len(body), len(want))
				}
				cl.expect("c OK BIG done")
				lit := strings.Repeat("x", 1<<20) // to the upstream
				cl.send(fmt.Sprintf("d APPEND INBOX {%d+}\r\n%s\r\n", len(lit), lit))
				cl.expect("d OK APPEND done")
				cl.send("e BIG 3\r\n")
				cl.expect("* 1 FETCH (BODY[] {3}")
				cl.expect("yyy)")
				cl.expect("e OK BIG done")

				list := e.reg.List("alice")
				if len(list) != 1 {
					t.Fatalf("registry: got %d sessions, want 1", len(list))
				}
				cl.send("f LOGOUT\r\n")
				cl.expect("* BYE")
				cl.expect("f OK")
				cl.expectClosed(2 * time.Second)
				if !waitFor(2*time.Second, func() bool { return e.reg.Count("") == 0 && lim.Total() == 0 }) {
					t.Fatalf("after logout: got %d sessions and %d connections, want 0 and 0", e.reg.Count(""), lim.Total())
				}
				var ended string
				waitFor(time.Second, func() bool {
					for _, l := range strings.Split(logs.String(), "\n") {
						if strings.Contains(l, `msg="session ended"`) {
							ended = l
						}
					}
					return ended != ""
				})
				for _, want := range []string{"proto=imap", "ip=127.0.0.1", "client=Relay/1", "user=alice",
					"session=" + list[0].ID, "bytes_in=", "bytes_out="} {
					if !strings.Contains(ended, want) {
						t.Errorf("session end log: got %q, want it to contain %q", ended, want)
					}
				}
			})
		}
	}
}

// BenchmarkRelayFetch is one FETCH-like round trip through a relayed
// session: a short command up, a 10 KiB literal down, with a plain
// upstream (read after waiting without a buffer) and a TLS one (read
// through small and big buffers).
func BenchmarkRelayFetch(b *testing.B) {
	for _, mode := range []string{upstream.ModeNone, upstream.ModeSTARTTLS} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, envOptions{upMode: mode, mutate: func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) }})
			c := e.dial()
			e.login(c)
			const size = 10 << 10
			buf := make([]byte, size+len(")\r\n"))
			for b.Loop() {
				c.send(fmt.Sprintf("c BIG %d\r\n", size))
				c.expect("* 1 FETCH")
				_ = c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := io.ReadFull(c.br, buf); err != nil {
					b.Fatalf("reading the literal: %v", err)
				}
				c.expect("c OK BIG done")
			}
		})
	}
}
