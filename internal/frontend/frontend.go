// Package frontend is the frame every protocol front-end runs in: it owns
// the listeners, the set of live connections, the WaitGroup that counts
// them and the Serve loops, one root context, and the Serve / Shutdown /
// Close contract, so that a protocol package holds its dialogue and
// nothing else.
//
// # The contract (net/http semantics, written once here)
//
//   - Serve(ln, newConn) accepts on ln until Shutdown or Close and then
//     returns ErrServerClosed; it always closes ln before returning, also
//     when the server was already closing when it was called. Temporary
//     accept errors (out of file descriptors, ...) are waited out. Serve
//     itself is counted in the WaitGroup, so Shutdown and Close wait for it.
//   - Each accepted connection gets its own goroutine running Conn.Serve
//     with the server's root context; a panic there is logged and ends that
//     connection only.
//   - Shutdown(ctx) stops accepting (closes every listener), kills every
//     connection that is not Active with the reason ReasonShutdown, and then
//     waits for the rest to end, killing connections that become inactive on
//     the way (polled, as net/http polls for idle connections). It returns
//     nil when everything has ended. When ctx is done first it kills what is
//     left, waits for it (Kill is bounded) and returns ctx.Err(); unlike
//     net/http, no connection outlives Shutdown.
//   - Close stops accepting, cancels the root context, kills every
//     connection and waits for all goroutines. It returns the first error
//     of closing the listeners; a second Close returns nil.
//   - Serve after Shutdown or Close closes its listener and returns
//     ErrServerClosed.
//
// # A new protocol is a small file
//
// A protocol (IMAP, SMTP, LDAP today, POP3 tomorrow) keeps its Options,
// its dialogue and its relay; what it gives the frame is one type per
// connection:
//
//	type conn struct{ ... }
//	func (c *conn) Serve(ctx context.Context) // the whole connection
//	func (c *conn) Kill(reason string)        // from any goroutine: say reason if the
//	                                          // protocol can (BYE, 421, Notice of
//	                                          // Disconnection), close both sides
//	func (c *conn) Active() bool              // logged in: Shutdown lets it finish
//
// and its Server is a thin wrapper:
//
//	type Server struct{ fe *frontend.Server; opts atomic.Pointer[Options] }
//	func NewServer(o Options) *Server { s := &Server{fe: frontend.New(o.Logger)}; ...}
//	func (s *Server) Serve(ln net.Listener) error {
//		return s.fe.Serve(ln, func(nc net.Conn) frontend.Conn { return newConn(s.opts.Load(), nc) })
//	}
//	func (s *Server) Shutdown(ctx context.Context) error { return s.fe.Shutdown(ctx) }
//	func (s *Server) Close() error                       { return s.fe.Close() }
//
// newConn must not block or do I/O (the accept loop runs it); everything
// else, the connection limit included, belongs in Serve. Serve returns
// when every goroutine it started has ended — unless the connection calls
// Detach from Serve: the frame then keeps it tracked (killed by Shutdown
// and Close, counted in the WaitGroup) until the release function Detach
// returned is called, so a long idle session (the IMAP relay's two copy
// loops) holds no goroutine of the frame's. A connection that wants a
// context of its own before Serve derives it from Context.
//
// What the protocols share besides lives here too: ErrServerClosed (a
// protocol declares `var ErrServerClosed = frontend.ErrServerClosed`, so
// errors.Is works for every front-end with one sentinel), the Metrics
// interface (`type Metrics = frontend.Metrics`) with OrNoMetrics and the
// relay directions, and Or for an Options field whose zero value means its
// default. The Authenticator each protocol asks stays declared where it is
// used. internal/daemon runs the HTTP listeners (portal, listen.http,
// listen.auth_http) under the same Serve/Shutdown/Close contract.
package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("server closed")

// ReasonShutdown is the reason given to connections killed by Shutdown and
// Close.
const ReasonShutdown = "Server shutting down"

// Conn is what a protocol's connection gives the frame.
type Conn interface {
	// Serve runs the connection to its end, on a goroutine of the frame's.
	// ctx is the server's root context, cancelled by Close (and by Shutdown
	// once everything has ended). Serve returns when every goroutine it
	// started has ended.
	Serve(ctx context.Context)
	// Kill ends the connection from another goroutine, telling the client
	// reason where the protocol can. It must return promptly (bounded
	// writes) and may be called more than once.
	Kill(reason string)
	// Active reports whether the connection is logged in: Shutdown waits for
	// active connections and kills the others.
	Active() bool
}

// Server is the frame; create it with New. Its methods are safe for
// concurrent use.
type Server struct {
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[Conn]*entry
	wg        sync.WaitGroup // Serve loops and connections
}

// entry is a tracked connection's state.
type entry struct {
	// detached is set by Detach: the connection outlives its Serve and
	// ends with the release function Detach returned.
	detached bool
}

// New returns a server; log receives panics of connections (nil means
// slog.Default()).
func New(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, listeners: make(map[net.Listener]struct{}), conns: make(map[Conn]*entry)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Context is the root context: cancelled by Close, and by Shutdown once
// every connection has ended.
func (s *Server) Context() context.Context { return s.ctx }

// Serve accepts connections on ln and runs each on its own goroutine:
// newConn wraps it (without blocking), then its Serve runs it. See the
// package comment for the contract.
func (s *Server) Serve(ln net.Listener, newConn func(net.Conn) Conn) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	return acceptLoop(ln, s.isClosing, ErrServerClosed, func(nc net.Conn) bool {
		c := newConn(nc)
		e := s.track(c)
		if e == nil {
			nc.Close()
			return false
		}
		go s.run(c, e)
		return true
	})
}

// run is a connection's goroutine.
func (s *Server) run(c Conn, e *entry) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic serving connection", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			c.Kill("Internal error")
		}
		s.mu.Lock()
		detached := e.detached
		s.mu.Unlock()
		if !detached {
			s.untrack(c)
		}
	}()
	c.Serve(s.ctx)
}

// Detach lets c, from its own Serve, outlive Serve: the frame keeps it
// tracked (Shutdown and Close still kill it and wait for it) until release
// is called, once, when every goroutine it handed its work to has ended.
// A long-lived session (an IMAP relay) thus needs no goroutine of the
// frame's while it idles.
func (s *Server) Detach(c Conn) (release func()) {
	s.mu.Lock()
	e := s.conns[c]
	if e == nil {
		s.mu.Unlock()
		panic("frontend: Detach of a connection that is not being served")
	}
	e.detached = true
	s.mu.Unlock()
	return func() { s.untrack(c) }
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track registers c; nil when the server is closing.
func (s *Server) track(c Conn) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	e := &entry{}
	s.conns[c] = e
	s.wg.Add(1)
	return e
}

func (s *Server) untrack(c Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Len returns the number of live connections.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// stopAccepting marks the server closing and closes its listeners; it
// returns the first error of closing them.
func (s *Server) stopAccepting() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	var err error
	for ln := range s.listeners {
		if cerr := ln.Close(); cerr != nil && err == nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
		delete(s.listeners, ln)
	}
	return err
}

// kill kills the connections for which pick returns true, outside the lock.
func (s *Server) kill(pick func(Conn) bool) {
	s.mu.Lock()
	var victims []Conn
	for c := range s.conns {
		if pick(c) {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.Kill(ReasonShutdown)
	}
}

// shutdownPollMax is the longest wait between two looks for connections
// that became inactive during Shutdown.
const shutdownPollMax = 500 * time.Millisecond

// Shutdown stops accepting, kills inactive connections and waits for the
// active ones until ctx is done. See the package comment.
func (s *Server) Shutdown(ctx context.Context) error {
	_ = s.stopAccepting()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	inactive := func(c Conn) bool { return !c.Active() }
	s.kill(inactive)
	poll := time.Millisecond
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		select {
		case <-done:
			s.cancel()
			return nil
		case <-ctx.Done():
			s.cancel()
			s.kill(func(Conn) bool { return true })
			<-done
			return ctx.Err()
		case <-t.C:
			s.kill(inactive)
			poll = min(2*poll, shutdownPollMax)
			t.Reset(poll)
		}
	}
}

// Close stops accepting, kills every connection and waits for every
// goroutine. A second Close returns nil.
func (s *Server) Close() error {
	err := s.stopAccepting()
	s.cancel()
	s.kill(func(Conn) bool { return true })
	s.wg.Wait()
	return err
}
