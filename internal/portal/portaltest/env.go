// Package portaltest starts the self-service portal for tests, in front of
// a real OpenID provider (package demoidp) and a real control backend
// (bolt store, static directory, login service), and drives it with plain
// HTTP clients or a headless Chromium (see Browser).
//
// It is for tests only; other packages' tests (for example an IMAP round
// trip through Dovecot) reuse Start, NewBackend and Browser.Lifecycle.
package portaltest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/portal"
	"github.com/legate-proxy/legate/internal/portal/demoidp"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store/bolt"
)

// Clock is a clock that runs with real time plus an offset the test
// advances (session timeouts without sleeping).
type Clock struct {
	mu  sync.Mutex
	off time.Duration
}

// Now returns the real time plus the offset.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// Backend is a real control backend: bolt store in a temp dir, static
// directory, login service, control.Service.
type Backend struct {
	Local *control.Service
	Auth  *auth.Service
	Store *bolt.Store
}

// NewBackend builds a Backend for users; maxPerUser zero means 40.
func NewBackend(t testing.TB, users []directory.StaticUser, maxPerUser int) *Backend {
	t.Helper()
	b, err := bolt.Open(context.Background(), bolt.Options{Path: filepath.Join(t.TempDir(), "legate.db"), FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("portaltest: open store: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	dir, err := directory.NewStatic(users)
	if err != nil {
		t.Fatalf("portaltest: directory: %v", err)
	}
	pol := policy.Default()
	pol.AllowPlaintextLoopback = true
	svc := auth.New(auth.Options{Store: b, Directory: dir, Policy: &pol, Logger: TestLogger(t)})
	return &Backend{Store: b, Auth: svc,
		Local: &control.Service{Store: svc.Store(), Directory: svc.Directory, Policy: svc.Policy, Explainer: svc, MaxPerUser: func() int { return maxPerUser }}}
}

// Options configure Start.
type Options struct {
	// Control backs the portal; required.
	Control portal.Control
	// Users of the provider; their AMR defaults to multifactor.
	Users []demoidp.User
	// Configure may change the portal settings before New (defaults: those
	// of config.Default, client settings for example.com).
	Configure func(*config.Portal)
	// TLS serves the portal over HTTPS (httptest certificate).
	TLS bool
	// Logger; nil logs through t.Log.
	Logger *slog.Logger
	// ExternalURL, if set, is the address users open (e.g. a TLS proxy in
	// front of the portal): Env.URL becomes it and Env.Direct is the
	// portal's own listener.
	ExternalURL string
	// Certificate signs device set-up profiles (portal.Options.Certificate).
	Certificate func() *tls.Certificate
	// WrapListener, if set, wraps the portal's listener (e.g. in a
	// proxyproto.Listener) before the server starts.
	WrapListener func(net.Listener) net.Listener
	// SignOuts shares sign-outs between portals (portal.Options.SignOuts).
	SignOuts portal.SignOuts
}

// Env is a running portal and provider.
type Env struct {
	URL    string // the portal as users open it, e.g. http://127.0.0.1:12345
	Direct string // the portal's own listener (URL unless ExternalURL was set)
	IdPURL string
	IdP    *demoidp.Provider
	Portal *portal.Portal
	Clock  *Clock
	// Client is an HTTP client that trusts the portal's certificate (TLS);
	// it has no cookie jar and does not follow redirects.
	Client *http.Client

	t          testing.TB
	opts       portal.Options
	portalSwap *swap
}

// ClientID and ClientSecret of the portal at the provider.
const (
	ClientID     = "legate-portal"
	ClientSecret = "test-client-secret"
)

type swap struct{ h atomic.Pointer[http.Handler] }

func (s *swap) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

func (s *swap) set(h http.Handler) { s.h.Store(&h) }

// Start runs a demoidp provider and a portal on 127.0.0.1 ports, both
// stopped by t.Cleanup.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	log := o.Logger
	if log == nil {
		log = TestLogger(t)
	}
	idpSwap, portalSwap := &swap{}, &swap{}
	idpSwap.set(http.NotFoundHandler())
	portalSwap.set(http.NotFoundHandler())
	idpSrv := httptest.NewServer(idpSwap)
	t.Cleanup(idpSrv.Close)
	portalSrv := httptest.NewUnstartedServer(portalSwap)
	if o.WrapListener != nil {
		portalSrv.Listener = o.WrapListener(portalSrv.Listener)
	}
	if o.TLS {
		portalSrv.StartTLS()
	} else {
		portalSrv.Start()
	}
	t.Cleanup(portalSrv.Close)

	e := &Env{URL: portalSrv.URL, Direct: portalSrv.URL, IdPURL: idpSrv.URL, Clock: &Clock{}, t: t, portalSwap: portalSwap}
	if o.ExternalURL != "" {
		e.URL = o.ExternalURL
	}
	idp, err := demoidp.New(demoidp.Options{Issuer: idpSrv.URL, ClientID: ClientID, ClientSecret: ClientSecret,
		RedirectURIs: []string{e.URL + "/callback"}, Users: o.Users, Logger: log})
	if err != nil {
		t.Fatalf("portaltest: %v", err)
	}
	idpSwap.set(idp)
	e.IdP = idp

	cfg := config.Default().Portal
	cfg.OIDC.Issuer, cfg.OIDC.ClientID = idpSrv.URL, ClientID
	cfg.ClientSettings = config.ClientSettings{
		IMAP: config.ClientSetting{Host: "mail.example.com", Port: 993, Security: "tls"},
		SMTP: config.ClientSetting{Host: "mail.example.com", Port: 587, Security: "starttls"},
		LDAP: config.ClientSetting{Host: "ldap.example.com", Port: 636, Security: "tls"},
	}
	cfg.SessionKeyFile = filepath.Join(t.TempDir(), "portal.key")
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	e.Client = portalSrv.Client()
	e.Client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.opts = portal.Options{Control: o.Control, Config: cfg, ExternalURL: e.URL, TLS: o.TLS,
		ClientSecret: ClientSecret, Logger: log, Now: e.Clock.Now, HTTPClient: &http.Client{Timeout: 10 * time.Second},
		Certificate: o.Certificate, SignOuts: o.SignOuts}
	e.Restart()
	return e
}

// Restart replaces the portal with a new one built from the same options
// and files (session key, ended sessions): the portal's own restart, the
// provider and the listener staying up.
func (e *Env) Restart() {
	e.t.Helper()
	p, err := portal.New(e.opts)
	if err != nil {
		e.t.Fatalf("portaltest: portal.New: %v", err)
	}
	e.portalSwap.set(p)
	e.Portal = p
}

// Config returns the portal settings the portal was started with.
func (e *Env) Config() config.Portal { return e.opts.Config }

// TestLogger logs through t.Log (debug level).
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-min(len(p), 1)]))
	return len(p), nil
}
