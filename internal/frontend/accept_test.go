package frontend

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
)

// flakyListener fails Accept with the given errors first, then accepts.
type flakyListener struct {
	net.Listener
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

func TestAcceptLoop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fl := &flakyListener{Listener: ln, errs: []error{syscall.EMFILE, syscall.ECONNABORTED}}
	errClosed := errors.New("closed")
	var handled atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- acceptLoop(fl, func() bool { return false }, errClosed, func(c net.Conn) bool {
			c.Close()
			return handled.Add(1) < 2 // stop after the second connection
		})
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if err := <-done; err != errClosed {
		t.Errorf("Loop after handle said stop: got %v, want %v", err, errClosed)
	}
	if got := handled.Load(); got != 2 {
		t.Errorf("handled %d connections, want 2 (temporary errors must not end the loop)", got)
	}
}

func TestAcceptLoopStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errClosed := errors.New("closed")
	var closing atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- acceptLoop(ln, closing.Load, errClosed, func(c net.Conn) bool { c.Close(); return true })
	}()
	closing.Store(true)
	ln.Close()
	if err := <-done; err != errClosed {
		t.Errorf("Loop after close while closing: got %v, want %v", err, errClosed)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2.Close()
	if err := acceptLoop(ln2, func() bool { return false }, errClosed, nil); err == nil || err == errClosed {
		t.Errorf("Loop on a dead listener: got %v, want the Accept error", err)
	}
}
