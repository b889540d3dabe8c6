package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/upstream"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown or Close;
// it is the one sentinel of every front-end (internal/frontend).
var ErrServerClosed = frontend.ErrServerClosed

// Metrics receives relay and upstream figures; nil means none.
// *metrics.Metrics (internal/metrics) implements it.
type Metrics = frontend.Metrics

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
	Sessions frontend.SessionRegistry
	// Limiter bounds connections (shared across protocols); nil means
	// unlimited.
	Limiter frontend.ConnLimiter
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

func (o *Options) preauthTimeout() time.Duration {
	return frontend.Or(o.PreauthTimeout, 60*time.Second)
}
func (o *Options) idleTimeout() time.Duration  { return frontend.Or(o.IdleTimeout, 30*time.Minute) }
func (o *Options) writeTimeout() time.Duration { return frontend.Or(o.WriteTimeout, 30*time.Second) }
func (o *Options) maxPDU() int                 { return frontend.Or(o.MaxPDUSize, 1<<20) }
func (o *Options) maxQueued() int              { return max(frontend.Or(o.MaxQueuedBytes, 4<<20), 2*o.maxPDU()) }
func (o *Options) poolSize() int               { return frontend.Or(o.PoolSize, 8) }
func (o *Options) maxOutstanding() int         { return frontend.Or(o.MaxOutstanding, 64) }
func (o *Options) serviceMode() bool           { return o.Authz == AuthzService }

func (o *Options) ioTimeout() time.Duration {
	if o.Upstream != nil {
		return o.Upstream.IOTimeoutOrDefault()
	}
	return 30 * time.Second
}

func (o *Options) metrics() Metrics { return frontend.OrNoMetrics(o.Metrics) }

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Server is the LDAP front-end. Create it with NewServer.
type Server struct {
	fe   *frontend.Server
	opts atomic.Pointer[Options]
	pool *pool
}

// NewServer returns a server with the given options.
func NewServer(opts Options) *Server {
	s := &Server{fe: frontend.New(opts.Logger)}
	s.pool = &pool{opts: s.opts.Load}
	s.SetOptions(opts)
	return s
}

// SetOptions replaces the options for new connections and new upstream
// connections (on reload).
func (s *Server) SetOptions(o Options) { s.opts.Store(&o) }

// Serve accepts plaintext connections on ln (StartTLS is offered when
// Options.TLS is set) until Shutdown or Close, then returns
// ErrServerClosed. The contract is internal/frontend's.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS (LDAPS) connections on ln with Options.TLS.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.Load().TLS == nil {
		ln.Close()
		return errors.New("ldap: ServeTLS without a TLS config")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	return s.fe.Serve(ln, func(nc net.Conn) frontend.Conn { return newClientConn(s, nc, implicitTLS) })
}

// Shutdown stops accepting, closes connections that are not bound (with a
// Notice of Disconnection), waits for bound sessions to end until ctx is
// done, then closes them; last it closes the upstream pool.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.fe.Shutdown(ctx)
	s.pool.close()
	return err
}

// Close closes the listeners, every connection and the upstream pool, and
// waits for their goroutines. A second Close returns nil.
func (s *Server) Close() error {
	err := s.fe.Close()
	s.pool.close()
	return err
}
