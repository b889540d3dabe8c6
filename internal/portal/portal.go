// Package portal is Legate's self-service page (docs/contract.md §6): users sign in with
// the organisation's OpenID Connect provider (authorization-code flow with
// PKCE, state and nonce; multifactor required by default) and list, create
// and revoke their own app passwords through the same control operations,
// rules and audit log as the CLI.
//
// The page is server-rendered with html/template; its stylesheet and its few
// lines of script (copy to clipboard, allowed by a CSP hash) are embedded.
// Sessions live in an AES-GCM sealed cookie with a 15-minute idle and an
// 8-hour absolute timeout; sign-out ends a session on the server too (a
// bounded table of ended session ids kept beside the session key, so a
// copied cookie stays refused across restarts). Creating a password needs
// a sign-in younger than portal.reauth_after. Settings reload as one
// immutable value (Reload). Behind a reverse proxy, forwarded client
// addresses are believed only from portal.trusted_proxies (proxy.go).
// Right after a create the page offers one-tap device set-up (setup.go). Security is middleware: strict headers,
// http.CrossOriginProtection and a per-session CSRF token on every form. A
// new password is rendered once, in the response to the POST that created
// it, and never put in a URL, a log or a cache.
package portal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
)

// Control is what the portal needs from the control operations;
// *control.Service implements it.
type Control interface {
	CreateAppPassword(ctx context.Context, a control.CreateArgs) (control.Created, error)
	ListAppPasswords(ctx context.Context, user string) ([]control.Listed, error)
	RevokeAppPasswords(ctx context.Context, a control.RevokeArgs) (control.Revoked, error)
	ResolveClaim(ctx context.Context, a control.ClaimArgs) (string, error)
}

var _ Control = (*control.Service)(nil)

// Options configure a Portal.
type Options struct {
	// Control performs the operations; required.
	Control Control
	// Config is the portal section. Zero fields get the defaults of docs/contract.md §8:
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
	// Certificate, if set, returns the TLS certificate (with its key) that
	// signs the device set-up profiles; nil or a nil result: unsigned.
	Certificate func() *tls.Certificate
	// EndedSessionsFile keeps the sessions ended by sign-out across
	// restarts; "" means Config.SessionKeyFile + ".ended", or memory only
	// when that is empty too.
	EndedSessionsFile string
	// SignOuts, if set, is where sign-outs are shared with the other
	// instances of the same store (store/etcd): a session signed out on
	// any instance is refused on this one too. The local table is kept as
	// well. When SignOuts cannot answer, the session counts as ended.
	SignOuts SignOuts
}

// SignOuts keeps sign-outs where every instance sees them;
// store.SignOuts is one.
type SignOuts interface {
	EndSession(ctx context.Context, id string, until time.Time) error
	SessionEnded(ctx context.Context, id string) (bool, error)
}

// Portal is the self-service web app. It is an http.Handler.
type Portal struct {
	ctl        Control
	external   *url.URL
	secure     bool
	codec      *codec
	log        *slog.Logger
	now        func() time.Time
	httpClient *http.Client
	tmpl       *template.Template
	handler    http.Handler
	// set is the reloadable configuration (see Reload).
	set atomic.Pointer[settings]
	// ended are the sessions signed out on the server (see logout), and
	// signOuts those of every instance sharing the store (nil: one).
	ended    *endedSessions
	signOuts SignOuts
	// setups are the one-time device set-up links (see setup.go).
	setups *setupLinks
	cert   func() *tls.Certificate
}

// New builds a Portal. It does not contact the provider: discovery happens
// at the first sign-in, so the portal starts even if the provider is down.
func New(o Options) (*Portal, error) {
	if o.Control == nil {
		return nil, errors.New("portal: Options.Control is required")
	}
	p := &Portal{ctl: o.Control, secure: o.TLS, log: o.Logger, now: o.Now,
		httpClient: o.HTTPClient, cert: o.Certificate, signOuts: o.SignOuts}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	st, err := newSettings(o.Config, o.ClientSecret)
	if err != nil {
		return nil, err
	}
	st.provider = newProviderCache(st.cfg.OIDC.Issuer)
	p.set.Store(st)
	ext := o.ExternalURL
	if ext == "" {
		ext = o.Config.ExternalURL
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
		if o.Config.SessionKeyFile == "" {
			return nil, errors.New("portal: portal.session_key_file is required")
		}
		if key, err = LoadOrCreateKey(o.Config.SessionKeyFile); err != nil {
			return nil, err
		}
	}
	if p.codec, err = newCodec(key); err != nil {
		return nil, err
	}
	endedFile := o.EndedSessionsFile
	if endedFile == "" && o.Config.SessionKeyFile != "" {
		endedFile = o.Config.SessionKeyFile + ".ended"
	}
	if p.ended, err = loadEndedSessions(endedFile, p.now()); err != nil {
		return nil, err
	}
	p.setups = newSetupLinks()
	if p.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
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
	mux.HandleFunc("GET /setup/{token}", p.profile)
	mux.HandleFunc("GET /.well-known/autoconfig/mail/config-v1.1.xml", p.autoconfig)
	mux.HandleFunc("GET /mail/config-v1.1.xml", p.autoconfig)
	mux.HandleFunc("POST /autodiscover/autodiscover.xml", p.autodiscover)
	mux.HandleFunc("POST /Autodiscover/Autodiscover.xml", p.autodiscover)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.message(w, http.StatusForbidden, "Request refused", "This request came from another site and was refused.", false)
	}))
	return p.headers(p.withClient(cop.Handler(limitBody(mux))))
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
