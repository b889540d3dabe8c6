//go:build unix

package imap

import (
	"net"
	"syscall"
)

// readiness returns a function that blocks until c has something to read
// (data, end of stream or an error), honouring its read deadline, without
// holding a buffer; nil when c is not a plain socket (a *tls.Conn may hold
// decrypted data its socket no longer shows).
func readiness(c net.Conn) func() error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &peeker{rc: rc}
	w.f = w.ready
	return w.wait
}

// peeker waits for a socket to become readable. The runtime's poller
// wakes it on new data only, so each wait first peeks at the socket: data
// may have arrived since the last read.
type peeker struct {
	rc syscall.RawConn
	f  func(fd uintptr) bool // w.ready, bound once
	b  [1]byte
}

func (w *peeker) wait() error { return w.rc.Read(w.f) }

// ready reports whether a read on fd would not block.
func (w *peeker) ready(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), w.b[:], syscall.MSG_PEEK)
	errno, ok := err.(syscall.Errno)
	return !ok || (errno != syscall.EAGAIN && errno != syscall.EWOULDBLOCK)
}
