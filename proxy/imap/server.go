// Package imap is Legate's IMAP front-end. It runs its own small, bounded
// pre-authentication dialogue (RFC 9051/3501 greeting, CAPABILITY, NOOP,
// LOGOUT, ID of RFC 2971, STARTTLS, LOGIN and AUTHENTICATE PLAIN with SASL-IR
// of RFC 4959, literals with LITERAL+ of RFC 7888), asks the login service,
// then logs in to the upstream IMAP server as the user with the master
// credential (SASL PLAIN with authzid, or LOGIN user*master) and relays bytes
// both ways unchanged, so every upstream extension (IDLE, COMPRESS,
// CONDSTORE, QRESYNC, ...) works untouched.
//
// Listeners and connection tracking are internal/frontend's.
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
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

// Options configure a Server. The zero value of each field works as
// documented; Auth and Upstream are needed for logins to succeed.
type Options struct {
	// Auth decides logins; nil refuses every login as unavailable.
	Auth login.Authenticator
	// Sessions registers live sessions for listing and revocation; nil
	// means sessions are not registered.
	Sessions frontend.SessionRegistry
	// Limiter bounds connections (shared across protocols); nil means
	// unlimited.
	Limiter frontend.ConnLimiter
	// Upstream is the IMAP server sessions are passed on to; nil answers
	// every allowed login with NO [UNAVAILABLE].
	Upstream *upstream.Config
	// TLS is the server certificate; nil means no STARTTLS (and ServeTLS
	// fails).
	TLS *tls.Config
	// Logger receives connection and session logs; nil means slog.Default().
	Logger *slog.Logger
	// PreauthTimeout bounds the whole dialogue before login (TLS handshake
	// included); zero means 60s.
	PreauthTimeout time.Duration
	// IdleTimeout ends a relayed session with no traffic in either
	// direction; zero means 30m.
	IdleTimeout time.Duration
	// MaxLineLength bounds a command line before login; zero means 8192.
	MaxLineLength int
	// MaxLiteralSize bounds a literal before login; zero means 8192.
	MaxLiteralSize int
	// MaxBadCommands closes a connection after that many bad commands
	// before login; zero means 10.
	MaxBadCommands int
	// PassClientAddress sends the client's address and port to the
	// upstream before the master login, as ID ("x-originating-ip" ...
	// "x-originating-port" ...) (Dovecot honours it from
	// login_trusted_networks, so its logs, auth policy and penalties see
	// the real client); false means the upstream sees Legate's address.
	PassClientAddress bool
	// Metrics receives relayed bytes (per direction, counted per chunk),
	// upstream connect times and upstream failures; nil means none.
	Metrics Metrics

	// drainQuiet ends the drain of a TLS upstream's answers after the
	// client's end of stream once the upstream was quiet that long; zero
	// means 5s. drainMax bounds any drain; zero means drainTimeout (30s).
	// Both are for tests.
	drainQuiet, drainMax time.Duration
}

func (o *Options) preauthTimeout() time.Duration {
	return frontend.Or(o.PreauthTimeout, 60*time.Second)
}
func (o *Options) idleTimeout() time.Duration { return frontend.Or(o.IdleTimeout, 30*time.Minute) }
func (o *Options) maxLine() int               { return frontend.Or(o.MaxLineLength, 8192) }
func (o *Options) maxLiteral() int            { return frontend.Or(o.MaxLiteralSize, 8192) }
func (o *Options) maxBad() int                { return frontend.Or(o.MaxBadCommands, 10) }
func (o *Options) drainQuietOrDefault() time.Duration {
	return frontend.Or(o.drainQuiet, 5*time.Second)
}
func (o *Options) drainMaxOrDefault() time.Duration { return frontend.Or(o.drainMax, drainTimeout) }
func (o *Options) metrics() Metrics                 { return frontend.OrNoMetrics(o.Metrics) }

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Server is the IMAP front-end. Create it with NewServer.
type Server struct {
	fe   *frontend.Server
	opts atomic.Pointer[Options]
	bufs *sync.Pool // big relay buffers
}

// NewServer returns a server with the given options.
func NewServer(opts Options) *Server {
	s := &Server{fe: frontend.New(opts.Logger), bufs: newBufPool()}
	s.SetOptions(opts)
	return s
}

// SetOptions replaces the options for new connections (on reload).
func (s *Server) SetOptions(o Options) { s.opts.Store(&o) }

// Serve accepts plaintext connections on ln (STARTTLS is offered when
// Options.TLS is set) until Shutdown or Close, then returns
// ErrServerClosed. The contract is internal/frontend's.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS connections on ln with Options.TLS.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.Load().TLS == nil {
		ln.Close()
		return errors.New("imap: ServeTLS without a TLS config")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	return s.fe.Serve(ln, func(nc net.Conn) frontend.Conn { return s.newConn(nc, implicitTLS) })
}

// Shutdown stops accepting, closes connections that are not logged in yet
// (BYE), waits for relayed sessions to end until ctx is done, then closes
// them and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error { return s.fe.Shutdown(ctx) }

// Close closes listeners and every connection at once and waits for their
// goroutines. A second Close returns nil.
func (s *Server) Close() error { return s.fe.Close() }
