package proxyproto

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func listen(t *testing.T, timeout time.Duration) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listen(ln, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout: timeout,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { l.Close() })
	return l
}

func dialFrom(t *testing.T, from string, l *Listener, send string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// acceptOne accepts with a time limit.
func acceptOne(t *testing.T, l *Listener, within time.Duration) (net.Conn, bool) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := l.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c, true
	case <-time.After(within):
		l.Close() // ends the Accept above
		<-ch
		return nil, false
	}
}

func TestListenerTrustedPeer(t *testing.T) {
	for _, hdr := range []string{
		"PROXY TCP4 192.0.2.7 10.0.0.1 51250 143\r\n",
		string(v2tcp4()),
	} {
		l := listen(t, time.Second)
		dialFrom(t, "127.0.0.1", l, hdr+"a NOOP\r\n")
		c, ok := acceptOne(t, l, 2*time.Second)
		if !ok {
			t.Fatal("no connection accepted")
		}
		if got := c.RemoteAddr().String(); got != "192.0.2.7:51250" {
			t.Errorf("RemoteAddr: got %s, want 192.0.2.7:51250", got)
		}
		// The protocol starts right after the header.
		b := make([]byte, 8)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "a NOOP\r\n" {
			t.Errorf("after the header: got %q, %v", b, err)
		}
		if _, ok := c.(interface{ CloseWrite() error }); !ok {
			t.Error("wrapped connection lost CloseWrite")
		}
	}
}

// TestListenerUntrustedPeer: from an untrusted address nothing is read as
// a header: a forged one reaches the protocol as data, and the address is
// the peer's own.
func TestListenerUntrustedPeer(t *testing.T) {
	l := listen(t, time.Second)
	dialFrom(t, "127.0.0.2", l, "PROXY TCP4 192.0.2.7 10.0.0.1 51250 143\r\n")
	c, ok := acceptOne(t, l, 2*time.Second)
	if !ok {
		t.Fatal("no connection accepted")
	}
	if got := c.RemoteAddr().String(); !strings.HasPrefix(got, "127.0.0.2:") {
		t.Errorf("RemoteAddr: got %s, want 127.0.0.2", got)
	}
	b := make([]byte, 6)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "PROXY " {
		t.Errorf("got %q, %v; want the forged header as data", b, err)
	}
}

// TestListenerRefuses: a trusted peer's malformed, missing (timeout) or
// cut-off header closes that connection, and a good one behind it still
// gets through (the bad ones do not hold up Accept).
func TestListenerRefuses(t *testing.T) {
	l := listen(t, 300*time.Millisecond)
	bad := []net.Conn{
		dialFrom(t, "127.0.0.1", l, "a LOGIN alice secret\r\n"),            // no header
		dialFrom(t, "127.0.0.1", l, "PROXY TCP4 192.0.2.7 10.0.0.1 1\r\n"), // malformed
		dialFrom(t, "127.0.0.1", l, ""),                                    // silent: timeout
	}
	dialFrom(t, "127.0.0.1", l, "PROXY TCP4 192.0.2.9 10.0.0.1 1 2\r\n")
	c, ok := acceptOne(t, l, 2*time.Second)
	if !ok || c.RemoteAddr().String() != "192.0.2.9:1" {
		t.Fatalf("accepted %v, want the good connection from 192.0.2.9:1", c)
	}
	for i, b := range bad {
		_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := b.Read(make([]byte, 1)); err == nil {
			t.Errorf("bad connection %d: read %d bytes, want it closed", i, n)
		}
	}
}

// TestListenerCloseEndsPending: Close closes connections whose header is
// still awaited and returns without waiting for their timeout.
func TestListenerCloseEndsPending(t *testing.T) {
	l := listen(t, time.Minute)
	c := dialFrom(t, "127.0.0.1", l, "PROX")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	l.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("pending connection still open after Close")
	}
	if _, err := l.Accept(); err == nil {
		t.Error("Accept after Close: got no error")
	}
}
