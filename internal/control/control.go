// Package control holds the operations an operator or a user performs on a
// running Legate: create, list and revoke app passwords, explain a decision,
// read and verify the audit log, list and kill live sessions. The CLI (directly
// or through the admin socket) and the self-service portal both call these,
// so the rules — administrators refused, the per-user limit, revocation that
// closes live sessions at once — live in one place.
package control

import (
	"context"
	"errors"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

// Errors with a message meant for the person who asked.
var (
	ErrAdmin       = errors.New("administrators cannot have app passwords: sign in with multifactor authentication instead")
	ErrBlocked     = errors.New("legacy authentication is blocked for this user: app passwords cannot be created")
	ErrUnknownUser = errors.New("unknown user")
	ErrUsage       = errors.New("usage")
)

// Explainer evaluates a login without side effects; *auth.Service is one.
type Explainer interface {
	Explain(ctx context.Context, req login.Request) login.Result
}

// Service performs operations in this process. Its rules come from policy
// (the same helpers policy.Decide applies to logins); users are named by
// their canonical name, resolved through the directory (docs/identity.md).
type Service struct {
	// Store holds app passwords and the audit log; required.
	Store store.Store
	// Directory returns the directory in force (reload may replace it);
	// required.
	Directory func() directory.Directory
	// Policy returns the policy in force; required.
	Policy func() *policy.Config
	// Explainer answers Explain; nil: Explain reports ErrNoServer.
	Explainer Explainer
	// Registry holds the live sessions; nil when no server runs (CLI
	// without serve).
	Registry *session.Registry
	// MaxPerUser is the app-password limit; zero means 40.
	MaxPerUser func() int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// UpstreamLogin, if set, says how the upstream of protocol would be
	// logged in to as a user (Explain shows it); it must name no secret.
	UpstreamLogin func(protocol, name string, addresses []string) string
}

func (l *Service) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// CreateArgs asks for a new app password.
type CreateArgs struct {
	User     string         `json:"user"`
	Name     string         `json:"name"`
	Scope    []string       `json:"scope,omitempty"`
	Networks []netip.Prefix `json:"networks,omitempty"`
	// ExpiresIn is a duration from now; zero: never.
	ExpiresIn time.Duration `json:"expires_in,omitempty"`
	Via       string        `json:"via,omitempty"` // cli, portal
}

// Created is the result of a create: the record and the secret, shown once.
type Created struct {
	AppPassword store.AppPassword `json:"app_password"`
	Secret      string            `json:"password"`
}

// Listed is an app password with its status under the current policy.
type Listed struct {
	store.AppPassword
	Status string `json:"status"` // active, expired, unused-expired, password-changed
}

// RevokeArgs selects app passwords to revoke.
type RevokeArgs struct {
	User string `json:"user"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
	All  bool   `json:"all,omitempty"`
	Via  string `json:"via,omitempty"`
}

// Revoked is the result of a revocation.
type Revoked struct {
	Revoked        []store.AppPassword `json:"revoked"`
	SessionsClosed int                 `json:"sessions_closed"`
}

// lookup resolves a login name to the directory user it names.
func (l *Service) lookup(ctx context.Context, login string) (*directory.User, error) {
	u, err := l.Directory().Lookup(ctx, login)
	if errors.Is(err, directory.ErrNoSuchUser) {
		return nil, fmt.Errorf("%w %q", ErrUnknownUser, login)
	}
	return u, err
}

// owner is the name under which a user's records are kept: the canonical
// name when the directory knows the login, else the login as typed
// (normalised), so that the records of a user since removed from the
// directory can still be listed and revoked under their canonical name.
// u is nil in the second case.
func (l *Service) owner(ctx context.Context, login string) (name string, u *directory.User, err error) {
	u, err = l.Directory().Lookup(ctx, login)
	switch {
	case err == nil:
		return u.Name, u, nil
	case errors.Is(err, directory.ErrNoSuchUser):
		return store.NormalizeUser(login), nil, nil
	}
	return "", nil, err
}

// ClaimArgs is an identity asserted by a sign-in service (the portal's
// OpenID Connect provider).
type ClaimArgs struct {
	// Claim is the value of the username claim.
	Claim string `json:"claim"`
	// Attribute is what it must equal: "name" (or "": the canonical name)
	// or "mail" (one of the user's addresses).
	Attribute string `json:"attribute,omitempty"`
}

// Claim attributes (portal.oidc.username_attribute).
const (
	ClaimName = "name"
	ClaimMail = "mail"
)

// ResolveClaim maps a sign-in claim onto the canonical name of the one
// user it names, by exact (case-insensitive) equality with the chosen
// attribute. DN-shaped claims are refused, and so is a claim that reaches
// a user only by another route (a name claim equal to someone's address, an
// address claim equal to someone else's name): an identity provider that
// lets users choose their username cannot map one identity onto another.
func (l *Service) ResolveClaim(ctx context.Context, a ClaimArgs) (string, error) {
	claim := strings.TrimSpace(a.Claim)
	if a.Attribute != "" && a.Attribute != ClaimName && a.Attribute != ClaimMail {
		return "", fmt.Errorf("%w: the username attribute must be %q or %q", ErrUsage, ClaimName, ClaimMail)
	}
	if !directory.ValidLogin(claim) || directory.DNShaped(claim) {
		return "", fmt.Errorf("%w: the sign-in name is not a user name", ErrUnknownUser)
	}
	u, err := l.lookup(ctx, claim)
	if err != nil {
		return "", err
	}
	match := strings.EqualFold(u.Name, claim)
	if a.Attribute == ClaimMail {
		match = strings.Contains(claim, "@") &&
			slices.ContainsFunc(u.Addresses, func(x string) bool { return strings.EqualFold(strings.TrimSpace(x), claim) })
	}
	if !match {
		return "", fmt.Errorf("%w %q", ErrUnknownUser, claim)
	}
	return u.Name, nil
}

// CreateAppPassword creates an app password under the rules of docs/contract.md §1.
func (l *Service) CreateAppPassword(ctx context.Context, a CreateArgs) (Created, error) {
	name := strings.TrimSpace(a.Name)
	if name == "" || len(name) > 64 {
		return Created{}, fmt.Errorf("%w: the name (the device, e.g. \"Laptop\") must be 1 to 64 characters", ErrUsage)
	}
	for _, p := range a.Scope {
		if !policy.ValidProtocol(p) {
			return Created{}, fmt.Errorf("%w: unknown protocol %q in scope (want imap, smtp, ldap)", ErrUsage, p)
		}
	}
	u, err := l.lookup(ctx, a.User)
	if err != nil {
		return Created{}, err
	}
	if r, ok := l.Policy().MayUseLegacyAuth(&policy.User{Name: u.Name, Groups: u.Groups, Admin: u.Admin}); !ok {
		l.audit(a.Via, "create", u.Name, "deny", string(r.Rule), "", "")
		if r.Rule == policy.RuleAdmin {
			return Created{}, ErrAdmin
		}
		return Created{}, ErrBlocked
	}
	req := store.CreateRequest{User: u.Name, Name: name, Scope: a.Scope, Networks: a.Networks, Limit: l.limit()}
	if a.ExpiresIn > 0 {
		req.Expires = l.now().Add(a.ExpiresIn).UTC()
	}
	rec, secret, err := l.Store.Create(ctx, req)
	if err != nil {
		return Created{}, err
	}
	l.audit(a.Via, "create", u.Name, "ok", "", rec.ID, "name="+rec.Name)
	return Created{AppPassword: rec, Secret: secret}, nil
}

func (l *Service) limit() int {
	if l.MaxPerUser != nil {
		if n := l.MaxPerUser(); n > 0 {
			return n
		}
	}
	return 40
}

// statusOf names the rule of policy.CredentialStatus for listings.
var statusOf = map[policy.Rule]string{
	policy.RuleExpired:         "expired",
	policy.RulePasswordChanged: "password-changed",
	policy.RuleUnused:          "unused-expired",
}

// ListAppPasswords lists a user's app passwords with their status.
func (l *Service) ListAppPasswords(ctx context.Context, user string) ([]Listed, error) {
	name, u, err := l.owner(ctx, user)
	if err != nil {
		return nil, err
	}
	recs, err := l.Store.List(ctx, name)
	if err != nil {
		return nil, err
	}
	pol := l.Policy()
	var changed time.Time
	if u != nil {
		changed = u.PasswordChanged
	}
	now := l.now()
	out := make([]Listed, 0, len(recs))
	for _, r := range recs {
		st := "active"
		if f, ok := pol.CredentialStatus(auth.CredentialOf(r), changed, now); !ok {
			st = statusOf[f.Rule]
		}
		out = append(out, Listed{AppPassword: r, Status: st})
	}
	return out, nil
}

// RevokeAppPasswords revokes and closes the live sessions opened with them.
func (l *Service) RevokeAppPasswords(ctx context.Context, a RevokeArgs) (Revoked, error) {
	n := 0
	for _, set := range []bool{a.ID != "", a.Name != "", a.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Revoked{}, fmt.Errorf("%w: say which app passwords to revoke: one id, one name, or all of them", ErrUsage)
	}
	user, _, err := l.owner(ctx, a.User)
	if err != nil {
		return Revoked{}, err
	}
	revoked, err := l.Store.Revoke(ctx, user, store.Selector{ID: a.ID, Name: a.Name, All: a.All})
	if err != nil {
		return Revoked{}, err
	}
	res := Revoked{Revoked: revoked}
	if l.Registry != nil && len(revoked) > 0 {
		ids := make([]string, len(revoked))
		for i, r := range revoked {
			ids[i] = r.ID
		}
		res.SessionsClosed = l.Registry.KillAppPasswords(ids...)
	}
	for _, r := range revoked {
		l.audit(a.Via, "revoke", user, "ok", "", r.ID, "name="+r.Name)
	}
	return res, nil
}

// ExplainArgs asks for a decision without side effects.
type ExplainArgs struct {
	User     string     `json:"user"`
	IP       netip.Addr `json:"ip"`
	Protocol string     `json:"protocol"`
	TLS      bool       `json:"tls"`
	Secret   string     `json:"secret,omitempty"` // never logged
}

// Explanation is a decision with its trace.
type Explanation struct {
	Outcome       string   `json:"outcome"`
	Rule          string   `json:"rule"`
	Reason        string   `json:"reason,omitempty"`
	AppPasswordID string   `json:"app_password_id,omitempty"`
	SecretChecked bool     `json:"secret_checked"`
	Trace         []string `json:"trace"`
	// Upstream says how the session would be passed on: which upstream,
	// as whom, with which credential (master user or OAuth 2.0 token).
	Upstream string `json:"upstream,omitempty"`
}

// Explain evaluates a login like the front-ends would, without side effects.
func (l *Service) Explain(ctx context.Context, a ExplainArgs) (Explanation, error) {
	if !policy.ValidProtocol(a.Protocol) {
		return Explanation{}, fmt.Errorf("%w: the protocol must be imap, smtp or ldap", ErrUsage)
	}
	if !a.IP.IsValid() {
		return Explanation{}, fmt.Errorf("%w: the client's IP address is missing or not an IP address", ErrUsage)
	}
	if l.Explainer == nil {
		return Explanation{}, ErrNoServer
	}
	res := l.Explainer.Explain(ctx, login.Request{User: a.User, Secret: a.Secret, IP: a.IP, Protocol: a.Protocol, TLS: a.TLS})
	e := Explanation{Outcome: res.Outcome.String(), Rule: string(res.Rule), Reason: res.Reason, SecretChecked: a.Secret != ""}
	e.AppPasswordID = res.AppPasswordID()
	for _, s := range res.Trace {
		e.Trace = append(e.Trace, s.String())
	}
	if l.UpstreamLogin != nil {
		name, addrs := a.User, []string(nil)
		if u, err := l.Directory().Lookup(ctx, a.User); err == nil {
			name, addrs = u.Name, u.Addresses
		}
		e.Upstream = l.UpstreamLogin(a.Protocol, name, addrs)
	}
	return e, nil
}

// AuditArgs filters the audit log.
type AuditArgs struct {
	User  string        `json:"user,omitempty"`
	Since time.Duration `json:"since,omitempty"`
	Limit int           `json:"limit,omitempty"`
	// Seq selects only the record with this sequence number.
	Seq uint64 `json:"seq,omitempty"`
}

// Audit returns audit records.
func (l *Service) Audit(ctx context.Context, a AuditArgs) ([]store.AuditRecord, error) {
	if err := l.Store.Flush(ctx); err != nil {
		return nil, err
	}
	q := store.AuditQuery{Limit: a.Limit, Seq: a.Seq}
	if a.User != "" {
		name, _, err := l.owner(ctx, a.User)
		if err != nil {
			return nil, err
		}
		q.User = name
	}
	if a.Since > 0 {
		q.Since = l.now().Add(-a.Since)
	}
	return l.Store.AuditLog(ctx, q)
}

// VerifyAudit checks the audit hash chain.
func (l *Service) VerifyAudit(ctx context.Context) (store.VerifyResult, error) {
	if err := l.Store.Flush(ctx); err != nil {
		return store.VerifyResult{}, err
	}
	return l.Store.VerifyAudit(ctx)
}

// ErrNoServer: the operation needs a running `legate serve`.
var ErrNoServer = errors.New("no legate server is running (live sessions exist only in `legate serve`)")

// Sessions lists live sessions: all, or a user's.
func (l *Service) Sessions(ctx context.Context, user string) ([]session.Info, error) {
	if l.Registry == nil {
		return nil, ErrNoServer
	}
	if user != "" {
		name, _, err := l.owner(ctx, user)
		if err != nil {
			return nil, err
		}
		return l.Registry.List(name), nil
	}
	return l.Registry.List(""), nil
}

// KillArgs selects live sessions to close.
type KillArgs struct {
	ID   string `json:"id,omitempty"`
	User string `json:"user,omitempty"`
	Via  string `json:"via,omitempty"`
}

// KillSessions closes live sessions and returns how many.
func (l *Service) KillSessions(ctx context.Context, a KillArgs) (int, error) {
	if l.Registry == nil {
		return 0, ErrNoServer
	}
	if (a.ID == "") == (a.User == "") {
		return 0, fmt.Errorf("%w: say which sessions to close: one session id, or a user's", ErrUsage)
	}
	var n int
	var user string
	if a.ID != "" {
		n = l.Registry.KillID(a.ID)
	} else {
		var err error
		if user, _, err = l.owner(ctx, a.User); err != nil {
			return 0, err
		}
		n = l.Registry.KillUser(user)
	}
	l.audit(a.Via, "kill", user, "ok", "", "", fmt.Sprintf("id=%s closed=%d", a.ID, n))
	return n, nil
}

func (l *Service) audit(via, action, user, outcome, rule, apID, detail string) {
	if via == "" {
		via = "cli"
	}
	l.Store.Audit(store.AuditRecord{Time: l.now(), Action: action, Via: via, User: user,
		Outcome: outcome, Rule: rule, AppPasswordID: apID, Detail: detail})
}
