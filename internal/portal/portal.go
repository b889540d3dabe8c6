// Package portal is Legate's self-service page (SPEC §6): users sign in with
// the organisation's OpenID Connect provider (authorization-code flow with
// PKCE, state and nonce; multifactor required by default) and list, create
// and revoke their own app passwords through the same control operations,
// rules and audit log as the CLI.
//
// The page is server-rendered with html/template; its stylesheet and its few
// lines of script (copy to clipboard, allowed by a CSP hash) are embedded.
// Sessions live in an AES-GCM sealed cookie (no server state) with a 15-minute
// idle and an 8-hour absolute timeout; creating a password needs a sign-in
// younger than portal.reauth_after. Security is middleware: strict headers,
// http.CrossOriginProtection and a per-session CSRF token on every form. A
// new password is rendered once, in the response to the POST that created
// it, and never put in a URL, a log or a cache.
package portal

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
)

// Control is what the portal needs from the control operations;
// *control.Local implements it.
type Control interface {
	CreateAppPassword(ctx context.Context, a control.CreateArgs) (control.Created, error)
	ListAppPasswords(ctx context.Context, user string) ([]control.Listed, error)
	RevokeAppPasswords(ctx context.Context, a control.RevokeArgs) (control.Revoked, error)
	ResolveClaim(ctx context.Context, a control.ClaimArgs) (string, error)
}

var _ Control = (*control.Local)(nil)

// Options configure a Portal.
type Options struct {
	// Control performs the operations; required.
	Control Control
	// Config is the portal section. Zero fields get the defaults of SPEC §8:
	// username_claim preferred_username, reauth_after 10m; RequireMFA and
	// MFAAMR are used as given (config.Default sets require_mfa true and the
	// default amr list).
	Config config.Portal
	// ExternalURL is the address users open; "" means Config.ExternalURL.
	// The redirect URI is ExternalURL + "/callback".
	ExternalURL string
	// TLS says the portal itself serves HTTPS. Cookies are Secure and
	// __Host- prefixed, and HSTS is sent, when TLS is set or ExternalURL is
	// https (behind a TLS proxy). An http ExternalURL must be a loopback
	// address (development).
	TLS bool
	// SessionKey seals the cookies (32 bytes); nil means LoadOrCreateKey
	// of Config.SessionKeyFile.
	SessionKey []byte
	// ClientSecret is the OIDC client secret; "" means read
	// Config.OIDC.ClientSecretFile (none if that is empty too).
	ClientSecret string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock of sessions; nil means time.Now. ID tokens are
	// checked against the real clock.
	Now func() time.Time
	// HTTPClient talks to the provider; nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
}

// Portal is the self-service web app. It is an http.Handler.
type Portal struct {
	ctl          Control
	cfg          config.Portal
	external     *url.URL
	secure       bool
	codec        *codec
	log          *slog.Logger
	now          func() time.Time
	httpClient   *http.Client
	reauthAfter  time.Duration
	clientSecret string
	tmpl         *template.Template
	csp          atomic.Pointer[string] // grows the provider's origin after discovery
	handler      http.Handler

	idpMu sync.Mutex
	idpv  *idp
}

// New builds a Portal. It does not contact the provider: discovery happens
// at the first sign-in, so the portal starts even if the provider is down.
func New(o Options) (*Portal, error) {
	if o.Control == nil {
		return nil, errors.New("portal: Options.Control is required")
	}
	p := &Portal{ctl: o.Control, cfg: o.Config, secure: o.TLS, log: o.Logger, now: o.Now,
		httpClient: o.HTTPClient, clientSecret: o.ClientSecret}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	if p.cfg.OIDC.UsernameClaim == "" {
		p.cfg.OIDC.UsernameClaim = "preferred_username"
	}
	if p.reauthAfter = p.cfg.ReauthAfter.Std(); p.reauthAfter <= 0 {
		p.reauthAfter = 10 * time.Minute
	}
	if p.cfg.OIDC.Issuer == "" || p.cfg.OIDC.ClientID == "" {
		return nil, errors.New("portal: portal.oidc.issuer and portal.oidc.client_id are required")
	}
	ext := o.ExternalURL
	if ext == "" {
		ext = p.cfg.ExternalURL
	}
	u, err := url.Parse(strings.TrimSuffix(ext, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("portal: external URL %q: want https://host[:port]", ext)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("portal: plain HTTP is only for loopback development (external URL %s); use https", ext)
	}
	p.external = u
	p.secure = o.TLS || u.Scheme == "https"
	key := o.SessionKey
	if key == nil {
		if p.cfg.SessionKeyFile == "" {
			return nil, errors.New("portal: portal.session_key_file is required")
		}
		if key, err = LoadOrCreateKey(p.cfg.SessionKeyFile); err != nil {
			return nil, err
		}
	}
	if p.codec, err = newCodec(key); err != nil {
		return nil, err
	}
	if p.clientSecret == "" && p.cfg.OIDC.ClientSecretFile != "" {
		if p.clientSecret, err = config.ReadSecretFile(p.cfg.OIDC.ClientSecretFile); err != nil {
			return nil, fmt.Errorf("portal: %w", err)
		}
	}
	if p.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	p.setCSP("")
	p.handler = p.routes()
	return p, nil
}

func (p *Portal) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.authed(p.index))
	mux.HandleFunc("POST /passwords", p.authed(p.create))
	mux.HandleFunc("POST /passwords/{id}/revoke", p.authed(p.revoke))
	mux.HandleFunc("POST /passwords/revoke-all", p.authed(p.revokeAll))
	mux.HandleFunc("GET /login", p.login)
	mux.HandleFunc("GET /callback", p.callback)
	mux.HandleFunc("POST /logout", p.logout)
	mux.Handle("GET /static/", staticHandler())
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.message(w, http.StatusForbidden, "Request refused", "This request came from another site and was refused.", false)
	}))
	return p.headers(cop.Handler(limitBody(mux)))
}

// ServeHTTP serves the portal.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// RedirectURL is the OIDC redirect URI to register at the provider.
func (p *Portal) RedirectURL() string { return p.external.String() + "/callback" }

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// limitBody bounds request bodies (forms are small).
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		h.ServeHTTP(w, r)
	})
}
