// Package smtp is Legate's SMTP submission front-end (RFC 6409). It runs its
// own bounded dialogue with the client — EHLO/HELO (RFC 5321), STARTTLS
// (RFC 3207) or implicit TLS (RFC 8314), AUTH PLAIN (RFC 4616) and LOGIN
// (RFC 4954), MAIL, RCPT, DATA, BDAT (CHUNKING, RFC 3030), RSET, NOOP,
// QUIT; VRFY and EXPN refused —
// asks the login service, enforces that MAIL FROM is one of the user's
// addresses, and relays each transaction to the upstream submission server,
// logged in as the user with the master credential (SASL PLAIN with
// authzid), after passing the client's address with XCLIENT where the
// upstream offers it.
//
// Nothing the client sends is forwarded as it came: envelope addresses and
// parameters are decoded against an allow-list (SIZE, BODY, SMTPUTF8, RET,
// ENVID, NOTIFY, ORCPT; RFC 1870, 6152, 6531, 3461) and encoded again, a
// quoted local part is re-quoted (RFC 5321 §4.1.2), and the dot-stuffed DATA
// stream is checked as it passes: line ends are CRLF, a bare CR or bare LF
// is normalised to CRLF (RFC 5321 §2.3.8), and the end of data is only
// CRLF "." CRLF (envelope.go, data.go). DATA is streamed, never held in
// memory; the upstream's replies, enhanced status codes (RFC 3463)
// included, are passed back re-encoded. PIPELINING (RFC 2920) is offered.
// BDAT chunks get the same checks and go upstream as one DATA (bdat.go).
//
// Listeners and connection tracking are internal/frontend's.
package smtp

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

// Defaults of the Options fields.
const (
	DefaultPreauthTimeout     = 60 * time.Second
	DefaultIdleTimeout        = 30 * time.Minute
	DefaultWriteTimeout       = 60 * time.Second
	DefaultSubmissionTimeout  = 10 * time.Minute
	DefaultMaxMessageBytes    = 50 << 20
	DefaultMaxRecipients      = 100
	DefaultMaxLineLength      = 2000
	DefaultMaxPreauthCommands = 20
)

// Options configure a Server. The zero value of every field but Auth and
// Upstream works.
type Options struct {
	// Auth decides logins. Required.
	Auth login.Authenticator
	// Sessions registers authenticated sessions so that revocation can close
	// them; nil means sessions are not registered.
	Sessions frontend.SessionRegistry
	// Limiter bounds connections per IP and in total; nil means unlimited.
	Limiter frontend.ConnLimiter
	// Upstream is the submission server transactions are relayed to.
	// Required.
	Upstream *upstream.Config
	// TLS is the server certificate: STARTTLS on Serve, implicit TLS on
	// ServeTLS. nil means no STARTTLS (and ServeTLS fails).
	TLS *tls.Config
	// Logger gets one line per connection event; nil means slog.Default().
	Logger *slog.Logger
	// Domain is the host name in the greeting and in EHLO to the upstream;
	// empty means os.Hostname(), or "localhost".
	Domain string
	// PreauthTimeout bounds the time from connect to successful AUTH; zero
	// means 60s.
	PreauthTimeout time.Duration
	// IdleTimeout ends an authenticated session that sends nothing for that
	// long. It is refreshed on every read, so a slow but live DATA is not
	// cut off. Zero means 30m.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client; zero means 60s.
	WriteTimeout time.Duration
	// SubmissionTimeout bounds the wait for the upstream's reply after the
	// end of DATA; zero means 10m. Other upstream I/O is bounded by
	// Upstream.IOTimeout.
	SubmissionTimeout time.Duration
	// MaxMessageBytes is the SIZE limit; zero means 50 MiB.
	MaxMessageBytes int64
	// MaxRecipients per message; zero means 100.
	MaxRecipients int
	// MaxLineLength bounds command lines and DATA lines; zero means 2000.
	MaxLineLength int
	// MaxPreauthCommands is how many commands but NOOP and QUIT a client
	// may send before authenticating; the next one gets 421 and the
	// connection is closed. Unrecognised commands (VRFY and EXPN included)
	// are bounded separately on the whole connection (the fourth closes
	// it), and NOOPs by PreauthTimeout. Zero means 20.
	MaxPreauthCommands int
	// AllowAnySender turns off policy.enforce_sender: when false (the
	// default, enforce_sender: true) MAIL FROM must be one of the user's
	// addresses (domain compared case-insensitively, local part exactly).
	AllowAnySender bool
	// AllowNullSender permits MAIL FROM:<> (bounces); false refuses it.
	AllowNullSender bool
	// NoClientAddress stops passing the client's address and port to the
	// upstream (XCLIENT ADDR= PORT=, sent before AUTH when the upstream
	// advertises XCLIENT; Dovecot honours it from login_trusted_networks).
	// false (the default, upstream.smtp.pass_client_address: true) passes it.
	NoClientAddress bool
	// Metrics receives the message bytes sent upstream by DATA,
	// upstream connect times and upstream failures; nil means none.
	Metrics Metrics
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

func (o *Options) metrics() Metrics { return frontend.OrNoMetrics(o.Metrics) }

// Server is the SMTP submission front-end. Create it with NewServer.
type Server struct {
	fe   *frontend.Server
	opts atomic.Pointer[Options]
	bufs sync.Pool // *dataBufs, for DATA in progress
}

// NewServer returns a server using opts.
func NewServer(opts Options) *Server {
	s := &Server{fe: frontend.New(opts.Logger)}
	s.SetOptions(opts)
	return s
}

// SetOptions replaces the options for new connections (on reload); live
// connections keep the options they started with.
func (s *Server) SetOptions(o Options) {
	s.opts.Store(&o)
}

// Serve accepts plaintext connections on ln (submission, STARTTLS offered
// when Options.TLS is set) until Shutdown or Close, then returns
// ErrServerClosed. The contract is internal/frontend's.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts connections on ln and runs implicit TLS on them
// (submissions) with Options.TLS.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.Load().TLS == nil {
		ln.Close()
		return errors.New("smtp: ServeTLS: no TLS configuration")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	return s.fe.Serve(ln, func(nc net.Conn) frontend.Conn {
		return newConn(s, s.opts.Load(), nc, implicitTLS)
	})
}

// Shutdown stops accepting, closes connections that have not
// authenticated (421), and waits for authenticated sessions to end until
// ctx is done; then it closes them and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error { return s.fe.Shutdown(ctx) }

// Close closes the listeners and every connection at once and waits for
// the connection goroutines to end. A second Close returns nil.
func (s *Server) Close() error { return s.fe.Close() }
