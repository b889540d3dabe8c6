//go:build unix

package imap

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// waitResult runs wait with a read deadline d away and returns its error
// and how long it took.
func waitResult(c net.Conn, wait func() error, d time.Duration) (error, time.Duration) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	start := time.Now()
	err := wait()
	return err, time.Since(start)
}

func TestReadiness(t *testing.T) {
	t.Run("not a socket", func(t *testing.T) {
		p1, p2 := net.Pipe()
		defer p1.Close()
		defer p2.Close()
		if readiness(p1) != nil {
			t.Errorf("readiness(net.Pipe): got a wait function, want nil")
		}
		a, _ := tcpPair(t)
		if readiness(tls.Client(a, &tls.Config{})) != nil {
			t.Errorf("readiness(*tls.Conn): got a wait function, want nil (TLS buffers data)")
		}
	})
	t.Run("data left by a short read", func(t *testing.T) {
		a, b := tcpPair(t)
		wait := readiness(b)
		if wait == nil {
			t.Fatal("readiness(*net.TCPConn): got nil, want a wait function")
		}
		if _, err := a.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		// Let the runtime's poller take the readiness event now, so that
		// no later event announces these bytes.
		time.Sleep(50 * time.Millisecond)
		buf := make([]byte, 1)
		_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatal(err)
		}
		// Two bytes wait in the socket, announced before the read: the
		// wait must see them rather than sleep until new data.
		if err, d := waitResult(b, wait, 2*time.Second); err != nil {
			t.Errorf("wait with data buffered: got %v after %v, want nil at once", err, d)
		}
		rest := make([]byte, 2)
		if _, err := io.ReadFull(b, rest); err != nil || string(rest) != "bc" {
			t.Errorf("read after wait: got %q, %v; want \"bc\"", rest, err)
		}
	})
	t.Run("data arriving later", func(t *testing.T) {
		a, b := tcpPair(t)
		wait := readiness(b)
		go func() {
			time.Sleep(100 * time.Millisecond)
			a.Write([]byte("x"))
		}()
		err, d := waitResult(b, wait, 2*time.Second)
		if err != nil || d < 50*time.Millisecond {
			t.Errorf("wait: got %v after %v, want nil after about 100ms", err, d)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		_, b := tcpPair(t)
		err, d := waitResult(b, readiness(b), 100*time.Millisecond)
		if !errors.Is(err, os.ErrDeadlineExceeded) || d < 50*time.Millisecond {
			t.Errorf("wait on a silent socket: got %v after %v, want a deadline error after about 100ms", err, d)
		}
	})
	t.Run("end of stream", func(t *testing.T) {
		a, b := tcpPair(t)
		wait := readiness(b)
		a.Close()
		time.Sleep(50 * time.Millisecond) // as above: the event is taken
		if err, _ := waitResult(b, wait, 2*time.Second); err != nil {
			t.Errorf("wait after the peer closed: got %v, want nil (the read reports EOF)", err)
		}
		if n, err := b.Read(make([]byte, 8)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("read after the peer closed: got %d, %v; want 0, EOF", n, err)
		}
	})
	t.Run("closed locally", func(t *testing.T) {
		_, b := tcpPair(t)
		wait := readiness(b)
		go func() {
			time.Sleep(50 * time.Millisecond)
			b.Close()
		}()
		if err, _ := waitResult(b, wait, 2*time.Second); !errors.Is(err, net.ErrClosed) {
			t.Errorf("wait on a socket closed meanwhile: got %v, want net.ErrClosed", err)
		}
	})
}
