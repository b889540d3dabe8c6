package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/acceptor"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/upstream"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown or Close.
var ErrServerClosed = errors.New("ldap: server closed")

// SessionRegistry is the live-session registry as this front-end uses it
// (*session.Registry implements it): register a session after the login,
// then confirm it once the upstream has accepted it.
type SessionRegistry interface {
	Register(info session.Info, closeFn func()) (id string, done func())
	Confirm(ctx context.Context, id string) bool
}

// ConnLimiter bounds connections (*connlimit.Limiter implements it).
type ConnLimiter interface {
	Acquire(ip netip.Addr) (release func(), ok bool)
}

// Metrics receives relay and upstream figures; nil means none.
// *metrics.Metrics (internal/metrics) implements it.
type Metrics interface {
	RelayedBytes(proto, dir string, n int)
	UpstreamError(proto string)
	UpstreamConnect(proto string, d time.Duration)
}

// Relay directions passed to Metrics.RelayedBytes.
const (
	dirToUpstream = "to_upstream"
	dirToClient   = "to_client"
)

// noMetrics is the Metrics used when Options.Metrics is nil.
type noMetrics struct{}

func (noMetrics) RelayedBytes(string, string, int)      {}
func (noMetrics) UpstreamError(string)                  {}
func (noMetrics) UpstreamConnect(string, time.Duration) {}

// Authorization modes (upstream.ldap.authz).
const (
	// AuthzProxied runs each request as the user with RFC 4370.
	AuthzProxied = "proxied"
	// AuthzService runs requests as the service account, confined to
	// SearchBases and Attributes.
	AuthzService = "service"
)

// Options configure a Server. The zero value of each field works as
// documented; Auth and Upstream are needed for anything to succeed.
type Options struct {
	// Auth decides binds; nil answers every bind "unavailable".
	Auth login.Authenticator
	// Sessions registers bound sessions for listing and revocation; nil
	// means they are not registered.
	Sessions SessionRegistry
	// Limiter bounds connections (shared across protocols); nil means
	// unlimited.
	Limiter ConnLimiter
	// Upstream is the directory requests are forwarded to; MasterUser is
	// the service account's bind DN (bind_dn), MasterPassword its
	// password. Nil answers every forwarded request "unavailable".
	Upstream *upstream.Config
	// TLS is the server certificate; nil means no StartTLS (and ServeTLS
	// fails).
	TLS *tls.Config
	// Logger receives connection and session logs; nil means slog.Default().
	Logger *slog.Logger
	// PreauthTimeout bounds the wait for each message before a successful
	// bind (and the TLS handshake); zero means 60s.
	PreauthTimeout time.Duration
	// IdleTimeout ends a bound session that sends nothing for that long
	// while no request is outstanding; zero means 30m.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client; zero means 30s. A
	// client that does not read its results for that long is disconnected.
	WriteTimeout time.Duration
	// MaxPDUSize bounds one LDAP message, from the client or the upstream;
	// zero means 1 MiB.
	MaxPDUSize int
	// MaxQueuedBytes bounds what is queued for one client (responses it
	// has not read yet); zero means 4 MiB, and it is never less than twice
	// MaxPDUSize. A client whose queue overflows is disconnected and its
	// outstanding requests are abandoned upstream.
	MaxQueuedBytes int
	// PoolSize is the number of upstream connections; zero means 8.
	PoolSize int
	// MaxOutstanding bounds the requests one session may have in flight;
	// zero means 64. More get busy (51).
	MaxOutstanding int
	// AllowWrites forwards add, modify, delete, modify DN and the password
	// modify extended operation; false refuses them (unwillingToPerform).
	AllowWrites bool
	// Authz is AuthzProxied or AuthzService; empty means AuthzProxied.
	Authz string
	// SearchBases confine requests in service mode: a base or entry DN
	// outside all of them gets insufficientAccessRights (50). Empty means
	// no confinement (not recommended).
	SearchBases []string
	// Attributes, in service mode, is the list of attribute types
	// returned in search entries; others are stripped. Empty returns all.
	Attributes []string
	// Metrics receives the bytes of forwarded requests and of the
	// upstream's responses passed back, the time to connect and bind each
	// upstream connection, and failures to do so; nil means none.
	Metrics Metrics
}

func (o *Options) preauthTimeout() time.Duration { return orDur(o.PreauthTimeout, 60*time.Second) }
func (o *Options) idleTimeout() time.Duration    { return orDur(o.IdleTimeout, 30*time.Minute) }
func (o *Options) writeTimeout() time.Duration   { return orDur(o.WriteTimeout, 30*time.Second) }
func (o *Options) maxPDU() int                   { return orInt(o.MaxPDUSize, 1<<20) }
func (o *Options) maxQueued() int                { return max(orInt(o.MaxQueuedBytes, 4<<20), 2*o.maxPDU()) }
func (o *Options) poolSize() int                 { return orInt(o.PoolSize, 8) }
func (o *Options) maxOutstanding() int           { return orInt(o.MaxOutstanding, 64) }
func (o *Options) serviceMode() bool             { return o.Authz == AuthzService }

func (o *Options) ioTimeout() time.Duration {
	if o.Upstream != nil {
		return o.Upstream.IOTimeoutOrDefault()
	}
	return 30 * time.Second
}

func (o *Options) metrics() Metrics {
	if o.Metrics != nil {
		return o.Metrics
	}
	return noMetrics{}
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

func orDur(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orInt(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// Server is the LDAP front-end. Create it with NewServer.
type Server struct {
	opts atomic.Pointer[Options]
	pool *pool

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	wg        sync.WaitGroup // Serve loops and connection goroutines
}

// NewServer returns a server with the given options.
func NewServer(opts Options) *Server {
	s := &Server{listeners: make(map[net.Listener]struct{}), conns: make(map[*clientConn]struct{})}
	s.pool = &pool{opts: s.opts.Load}
	s.SetOptions(opts)
	return s
}

// SetOptions replaces the options for new connections and new upstream
// connections (on reload).
func (s *Server) SetOptions(o Options) { s.opts.Store(&o) }

// Serve accepts plaintext connections on ln (StartTLS is offered when
// Options.TLS is set). It returns ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS (LDAPS) connections on ln with Options.TLS.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.Load().TLS == nil {
		return errors.New("ldap: ServeTLS without a TLS config")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
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

	err := acceptor.Loop(ln, s.isClosing, ErrServerClosed, func(nc net.Conn) bool {
		c := newClientConn(s, nc, implicitTLS)
		if !s.track(c) {
			nc.Close()
			return false
		}
		go c.serve()
		return true
	})
	if err != ErrServerClosed {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}
	return err
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) track(c *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// stopListening closes the listeners and marks the server closing.
func (s *Server) stopListening() {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
		delete(s.listeners, ln)
	}
	s.mu.Unlock()
}

func (s *Server) snapshot() []*clientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*clientConn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Shutdown stops accepting, closes connections that are not bound, waits
// for bound sessions to end until ctx is done, then closes them (with a
// Notice of Disconnection) and the upstream pool.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopListening()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, c := range s.snapshot() {
			if !c.isBound() {
				c.kill(resultUnavailable, "server shutting down")
			}
		}
		select {
		case <-done:
			s.pool.close()
			return nil
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners, every connection and the upstream pool, and
// waits for their goroutines.
func (s *Server) Close() error {
	s.stopListening()
	for _, c := range s.snapshot() {
		c.kill(resultUnavailable, "server shutting down")
	}
	s.wg.Wait()
	s.pool.close()
	return nil
}
