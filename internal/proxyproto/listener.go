package proxyproto

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Options configure a Listener.
type Options struct {
	// Trusted are the peers (load balancers) that must send a header;
	// connections from anywhere else are passed on untouched, with their
	// own address, and nothing they send is read as a header.
	Trusted []netip.Prefix
	// Timeout bounds the wait for a trusted peer's header; zero means 5s.
	Timeout time.Duration
	// MaxPending bounds the connections whose header is being read at
	// once; zero means 1024. Further trusted connections wait in the
	// kernel's backlog.
	MaxPending int
	// Logger receives refused connections; nil means slog.Default().
	Logger *slog.Logger
}

// Listener wraps a net.Listener: from a trusted peer, Accept returns the
// connection only after a valid header, with the header's source as its
// RemoteAddr; a malformed header, a missing one (timeout) or an early
// close ends that connection. Headers are read on goroutines of their
// own, so a slow balancer connection does not hold up the others.
type Listener struct {
	ln   net.Listener
	opts Options
	out  chan accepted
	done chan struct{}
	once sync.Once
	sem  chan struct{}

	mu      sync.Mutex
	pending map[net.Conn]struct{}
	wg      sync.WaitGroup // the accept loop and header readers
}

type accepted struct {
	c   net.Conn
	err error
}

// Listen wraps ln. Close the Listener (not ln) to stop it.
func Listen(ln net.Listener, opts Options) *Listener {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Listener{ln: ln, opts: opts, out: make(chan accepted), done: make(chan struct{}),
		sem: make(chan struct{}, opts.MaxPending), pending: make(map[net.Conn]struct{})}
	l.wg.Add(1)
	go l.loop()
	return l
}

// Accept returns the next connection (see Listener).
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.out:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Addr is the wrapped listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, closes connections whose header is still
// awaited, and waits for its goroutines. It is safe to call more than once.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
	})
	l.wg.Wait()
	return err
}

func (l *Listener) loop() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if !l.deliver(accepted{err: err}) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.trusted(c) {
			if !l.deliver(accepted{c: c}) {
				c.Close()
				return
			}
			continue
		}
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			c.Close()
			return
		}
		l.mu.Lock()
		select {
		case <-l.done: // Close has closed the pending ones already
			l.mu.Unlock()
			c.Close()
			return
		default:
		}
		l.pending[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handshake(c)
	}
}

// deliver hands a result to Accept; false once the listener is closed.
func (l *Listener) deliver(a accepted) bool {
	select {
	case l.out <- a:
		return true
	case <-l.done:
		return false
	}
}

func (l *Listener) trusted(c net.Conn) bool {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range l.opts.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// handshake reads the header of a trusted peer's connection and delivers
// the wrapped connection, or closes it.
func (l *Listener) handshake(c net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.sem }()
	_ = c.SetReadDeadline(time.Now().Add(l.opts.Timeout))
	h, err := Read(c)
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		select {
		case <-l.done:
		default:
			l.opts.Logger.Warn("PROXY header refused; connection closed", "peer", c.RemoteAddr().String(), "err", err)
		}
		c.Close()
		return
	}
	wc := net.Conn(c)
	if !h.Local {
		wc = &Conn{Conn: c, remote: net.TCPAddrFromAddrPort(h.Source), Header: h}
	}
	if !l.deliver(accepted{c: wc}) {
		c.Close()
	}
}

// Conn is a connection whose RemoteAddr is the client named by a PROXY
// header. Nothing of the connection is buffered, so the raw socket
// (SyscallConn, CloseWrite) stays usable.
type Conn struct {
	net.Conn
	remote net.Addr
	// Header is the header that named the client.
	Header Header
}

// RemoteAddr is the client's address from the header.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SyscallConn gives the raw socket when the wrapped connection has one.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// CloseWrite shuts the write side when the wrapped connection can.
func (c *Conn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.ErrUnsupported
	}
	return cw.CloseWrite()
}
