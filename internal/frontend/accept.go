package frontend

// The accept loop (formerly internal/acceptor): it backs off on temporary
// errors (out of file descriptors, timeouts) instead of spinning or giving
// up, and stops when its server closes.

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// acceptLoop accepts connections from ln and hands each to handle, until Accept
// fails for good. closing reports whether the server is shutting down; the
// loop then returns closedErr, as it does when handle returns false (the
// server closed while the connection was being taken). handle owns the
// connection either way.
func acceptLoop(ln net.Listener, closing func() bool, closedErr error, handle func(net.Conn) bool) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if closing() {
				return closedErr
			}
			if temporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !handle(c) {
			return closedErr
		}
	}
}

// temporary reports whether an Accept error is worth waiting out.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}
