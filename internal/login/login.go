// Package login is the login contract between the front-ends and the login
// service: what a front-end asks (Request), what it is told (Result) and
// who answers (Authenticator). It is a leaf: it imports only policy (itself
// a leaf) for the decision, so a front-end that imports it depends on
// neither the directory nor the store. internal/auth implements it and
// converts its directory user and stored app password into the slim values
// here, once.
package login

import (
	"context"
	"net/netip"

	"github.com/legate-proxy/legate/policy"
)

// Request is one login attempt as a front-end received it.
type Request struct {
	User     string
	Secret   string
	IP       netip.Addr
	Protocol string // policy.IMAP, policy.SMTP, policy.LDAP
	TLS      bool
	// Client is the client's self-description (IMAP ID, SMTP EHLO name), if any.
	Client string
}

// User is the proven user as the front-ends need it.
type User struct {
	// Name is the canonical login name (docs/identity.md): every front-end
	// uses it from then on (upstream login, session registry, logs).
	Name string
	// DN is the LDAP distinguished name, if any (LDAP proxied authorization).
	DN string
	// Addresses are the user's mail addresses (SMTP sender check, upstream
	// login name).
	Addresses []string
}

// AppPassword names the app password a login proved.
type AppPassword struct {
	ID   string
	Name string
}

// Result is the answer of the login service.
type Result struct {
	policy.Decision
	// User is the proven user; nil unless the credential was proven.
	User *User
	// AppPassword is the matched app password; nil for primary-password
	// logins and failures.
	AppPassword *AppPassword
	// Upstream is where an allowed session goes: the upstream of the
	// request's protocol in the same configuration snapshot that decided,
	// so a reload between the decision and the upstream login cannot pair
	// one configuration's policy with another's upstream or credential.
	// Nil when the login service knows none (tests, front-ends built
	// alone): the front-end then uses its own Options.Upstream.
	Upstream Upstream
}

// Upstream is where an allowed session goes. internal/upstream's *Config
// is the one implementation; the front-ends, which dial it, know that
// type. An interface here keeps this package a leaf.
type Upstream interface {
	// UpstreamAddress is the upstream's host:port.
	UpstreamAddress() string
}

// AppPasswordID is the matched app password's ID, "" for none.
func (r Result) AppPasswordID() string {
	if r.AppPassword == nil {
		return ""
	}
	return r.AppPassword.ID
}

// Authenticator decides logins: the one call every front-end makes. It is
// safe for concurrent use.
type Authenticator interface {
	// Login decides one attempt, with every side effect (throttle, audit,
	// last use); a failure may be answered late (throttle delay) but never
	// after ctx is done.
	Login(ctx context.Context, req Request) Result
	// CredentialsAccepted reports whether credentials may be offered on a
	// connection (over TLS or not, from ip), for what front-ends advertise.
	CredentialsAccepted(tls bool, ip netip.Addr) bool
}
