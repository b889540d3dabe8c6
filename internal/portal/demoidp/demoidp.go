// Package demoidp is a DEMO-ONLY OpenID Connect provider: an in-memory
// OpenID provider (github.com/zitadel/oidc/v3/pkg/op) with one relying party,
// a fixed list of users who sign in with a user name and a code, and no
// persistence. `legate demo` runs it beside the portal, and the portal's
// tests sign in through it with a real browser.
//
// It implements the authorization-code flow with PKCE (S256), discovery,
// JWKS and RS256 ID tokens carrying nonce, auth_time, amr, acr and the
// user's claims (OpenID Connect Core 1.0). Each user's amr and acr are
// configured (SetAMR changes them), so a test can sign in with or without
// multifactor authentication.
//
// Never use it in production: codes are static per user, there are no
// sessions, no consent, no refresh tokens, no rate limits.
package demoidp

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is one account of the demo provider.
type User struct {
	// Username is the preferred_username claim and what is typed to sign in.
	Username string
	// Subject is the sub claim; empty means Username.
	Subject string
	// Name and Email are the name and email claims; optional.
	Name, Email string
	// Code is the sign-in code; empty means a random one (see Provider.Code).
	Code string
	// AMR and ACR go into the ID token; AMR nil means ["pwd", "otp"]
	// (multifactor), set []string{"pwd"} for a single-factor sign-in.
	AMR []string
	ACR string
	// NoAuthTime leaves auth_time out of the ID token (a provider that
	// does not send it, even after max_age or prompt=login).
	NoAuthTime bool
	// Claims are extra ID-token claims (e.g. a custom username claim).
	Claims map[string]any
}

// Options configure a Provider.
type Options struct {
	// Issuer is the provider's URL as clients reach it, e.g.
	// "http://127.0.0.1:1081"; required. http is allowed (demo only).
	Issuer string
	// ClientID and ClientSecret identify the one relying party; required.
	ClientID, ClientSecret string
	// RedirectURIs are the client's allowed redirect URIs; required.
	RedirectURIs []string
	// Users may sign in.
	Users []User
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
}

// Provider is a running demo OpenID provider. It is an http.Handler.
type Provider struct {
	store   *storage
	handler http.Handler
	log     *slog.Logger
	cb      func(r *http.Request, id string) string
}

// New builds a provider. Serve it at Options.Issuer.
func New(o Options) (*Provider, error) {
	if o.Issuer == "" || o.ClientID == "" || o.ClientSecret == "" || len(o.RedirectURIs) == 0 {
		return nil, errors.New("demoidp: Issuer, ClientID, ClientSecret and RedirectURIs are required")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := newStorage(client{id: o.ClientID, secret: o.ClientSecret, redirects: slices.Clone(o.RedirectURIs)})
	if err != nil {
		return nil, err
	}
	p := &Provider{store: st, log: log}
	for _, u := range o.Users {
		p.AddUser(u)
	}
	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	cfg := &op.Config{CryptoKey: cryptoKey, CryptoKeyId: "demo", CodeMethodS256: true, AuthMethodPost: true}
	provider, err := op.NewProvider(cfg, st, op.StaticIssuer(o.Issuer), op.WithAllowInsecure(), op.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("demoidp: %w", err)
	}
	callback := op.AuthCallbackURL(provider)
	p.cb = func(r *http.Request, id string) string { return callback(r.Context(), id) }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /signin", p.signinPage)
	mux.Handle("POST /signin", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(p.signin))
	mux.Handle("/", provider)
	p.handler = mux
	return p, nil
}

// ServeHTTP serves discovery, authorize, token, keys and the sign-in page.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// AddUser adds or replaces a user (by Subject).
func (p *Provider) AddUser(u User) {
	if u.Subject == "" {
		u.Subject = u.Username
	}
	if u.Code == "" {
		u.Code = rand.Text()[:8]
	}
	if u.AMR == nil {
		u.AMR = []string{"pwd", "otp"}
	}
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.users[u.Subject] = &u
}

// SetAMR changes the amr and acr a user's next sign-in gets.
func (p *Provider) SetAMR(username string, amr []string, acr string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	for _, u := range p.store.users {
		if u.Username == username {
			u.AMR, u.ACR = slices.Clone(amr), acr
		}
	}
}

// SetNoAuthTime says whether the user's next ID tokens leave out auth_time.
func (p *Provider) SetNoAuthTime(username string, omit bool) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	for _, u := range p.store.users {
		if u.Username == username {
			u.NoAuthTime = omit
		}
	}
}

// Code returns a user's sign-in code ("" if there is no such user).
func (p *Provider) Code(username string) string {
	if u, ok := p.find(username); ok {
		return u.Code
	}
	return ""
}

func (p *Provider) find(username string) (User, bool) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	for _, u := range p.store.users {
		if u.Username == username {
			return *u, true
		}
	}
	return User{}, false
}

//go:embed signin.html
var signinHTML string

var signinTmpl = template.Must(template.New("signin").Parse(signinHTML))

func (p *Provider) signinPage(w http.ResponseWriter, r *http.Request) {
	p.render(w, r.FormValue("id"), "", http.StatusOK)
}

func (p *Provider) render(w http.ResponseWriter, id, msg string, status int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	signinTmpl.Execute(w, struct{ ID, Error string }{id, msg})
}

func (p *Provider) signin(w http.ResponseWriter, r *http.Request) {
	id, name, code := r.PostFormValue("id"), r.PostFormValue("username"), r.PostFormValue("code")
	u, ok := p.find(name)
	if !ok || subtle.ConstantTimeCompare([]byte(u.Code), []byte(code)) != 1 {
		p.log.Info("demoidp: sign-in refused", "user", name)
		p.render(w, id, "Wrong user name or code.", http.StatusUnauthorized)
		return
	}
	if err := p.store.finish(id, &u); err != nil {
		p.render(w, "", "This sign-in request has expired. Go back to the application and start again.", http.StatusBadRequest)
		return
	}
	p.log.Info("demoidp: signed in", "user", name, "amr", u.AMR)
	http.Redirect(w, r, p.cb(r, id), http.StatusFound)
}
