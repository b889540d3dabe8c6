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

// Local performs operations in this process.
type Local struct {
	// Auth is the login service: its store, directory and policy are used.
	Auth *auth.Service
	// Sessions may be nil when no server runs (CLI without serve).
	Registry *session.Registry
	// MaxPerUser is the app-password limit; zero means 40.
	MaxPerUser func() int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (l *Local) now() time.Time {
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

func (l *Local) lookup(ctx context.Context, user string) (*directory.User, error) {
	u, err := l.Auth.Directory().Lookup(ctx, user)
	if errors.Is(err, directory.ErrNoSuchUser) {
		return nil, fmt.Errorf("%w %q", ErrUnknownUser, user)
	}
	return u, err
}

// CreateAppPassword creates an app password under the rules of SPEC §1.
func (l *Local) CreateAppPassword(ctx context.Context, a CreateArgs) (Created, error) {
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
	pol := l.Auth.Policy()
	pu := &policy.User{Name: u.Name, Groups: u.Groups, Admin: u.Admin}
	if pol.IsAdmin(pu) {
		l.audit(a.Via, "create", u.Name, "deny", string(policy.RuleAdmin), "", "")
		return Created{}, ErrAdmin
	}
	if pol.BlockLegacyAuth || containsFold(pol.BlockedUsers, u.Name) || anyFold(pol.BlockedGroups, u.Groups) {
		l.audit(a.Via, "create", u.Name, "deny", string(policy.RuleLegacyBlocked), "", "")
		return Created{}, ErrBlocked
	}
	req := store.CreateRequest{User: u.Name, Name: name, Scope: a.Scope, Networks: a.Networks, Limit: l.limit()}
	if a.ExpiresIn > 0 {
		req.Expires = l.now().Add(a.ExpiresIn).UTC()
	}
	rec, secret, err := l.Auth.Store().Create(ctx, req)
	if err != nil {
		return Created{}, err
	}
	l.audit(a.Via, "create", u.Name, "ok", "", rec.ID, "name="+rec.Name)
	return Created{AppPassword: rec, Secret: secret}, nil
}

func (l *Local) limit() int {
	if l.MaxPerUser != nil {
		if n := l.MaxPerUser(); n > 0 {
			return n
		}
	}
	return 40
}

// ListAppPasswords lists a user's app passwords with their status.
func (l *Local) ListAppPasswords(ctx context.Context, user string) ([]Listed, error) {
	recs, err := l.Auth.Store().List(ctx, user)
	if err != nil {
		return nil, err
	}
	pol := l.Auth.Policy()
	var changed time.Time
	if pol.RevokeOnPasswordChange {
		if u, err := l.Auth.Directory().Lookup(ctx, user); err == nil {
			changed = u.PasswordChanged
		}
	}
	now := l.now()
	out := make([]Listed, 0, len(recs))
	for _, r := range recs {
		st := "active"
		switch {
		case !r.Expires.IsZero() && !now.Before(r.Expires):
			st = "expired"
		case !changed.IsZero() && r.Created.Before(changed):
			st = "password-changed"
		case pol.UnusedExpired(r.Created, r.LastUse.Time, now):
			st = "unused-expired"
		}
		out = append(out, Listed{AppPassword: r, Status: st})
	}
	return out, nil
}

// RevokeAppPasswords revokes and closes the live sessions opened with them.
func (l *Local) RevokeAppPasswords(ctx context.Context, a RevokeArgs) (Revoked, error) {
	n := 0
	for _, set := range []bool{a.ID != "", a.Name != "", a.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Revoked{}, fmt.Errorf("%w: give exactly one of --id, --name or --all", ErrUsage)
	}
	user := store.NormalizeUser(a.User)
	revoked, err := l.Auth.Store().Revoke(ctx, user, store.Selector{ID: a.ID, Name: a.Name, All: a.All})
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
}

// Explain evaluates a login like the front-ends would, without side effects.
func (l *Local) Explain(ctx context.Context, a ExplainArgs) (Explanation, error) {
	if !policy.ValidProtocol(a.Protocol) {
		return Explanation{}, fmt.Errorf("%w: --protocol must be imap, smtp or ldap", ErrUsage)
	}
	if !a.IP.IsValid() {
		return Explanation{}, fmt.Errorf("%w: --ip must be an IP address", ErrUsage)
	}
	res := l.Auth.Explain(ctx, auth.Request{User: a.User, Secret: a.Secret, IP: a.IP, Protocol: a.Protocol, TLS: a.TLS})
	e := Explanation{Outcome: res.Outcome.String(), Rule: string(res.Rule), Reason: res.Reason, SecretChecked: a.Secret != ""}
	if res.AppPassword != nil {
		e.AppPasswordID = res.AppPassword.ID
	}
	for _, s := range res.Trace {
		e.Trace = append(e.Trace, s.String())
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
func (l *Local) Audit(ctx context.Context, a AuditArgs) ([]store.AuditRecord, error) {
	if err := l.Auth.Store().Flush(ctx); err != nil {
		return nil, err
	}
	q := store.AuditQuery{User: store.NormalizeUser(a.User), Limit: a.Limit, Seq: a.Seq}
	if a.Since > 0 {
		q.Since = l.now().Add(-a.Since)
	}
	return l.Auth.Store().AuditLog(ctx, q)
}

// VerifyAudit checks the audit hash chain.
func (l *Local) VerifyAudit(ctx context.Context) (store.VerifyResult, error) {
	if err := l.Auth.Store().Flush(ctx); err != nil {
		return store.VerifyResult{}, err
	}
	return l.Auth.Store().VerifyAudit(ctx)
}

// ErrNoServer: the operation needs a running `legate serve`.
var ErrNoServer = errors.New("no legate server is running (live sessions exist only in `legate serve`)")

// Sessions lists live sessions.
func (l *Local) Sessions(_ context.Context, user string) ([]session.Info, error) {
	if l.Registry == nil {
		return nil, ErrNoServer
	}
	return l.Registry.List(user), nil
}

// KillArgs selects live sessions to close.
type KillArgs struct {
	ID   string `json:"id,omitempty"`
	User string `json:"user,omitempty"`
	Via  string `json:"via,omitempty"`
}

// KillSessions closes live sessions and returns how many.
func (l *Local) KillSessions(_ context.Context, a KillArgs) (int, error) {
	if l.Registry == nil {
		return 0, ErrNoServer
	}
	if (a.ID == "") == (a.User == "") {
		return 0, fmt.Errorf("%w: give a session ID or --user", ErrUsage)
	}
	var n int
	if a.ID != "" {
		n = l.Registry.KillID(a.ID)
	} else {
		n = l.Registry.KillUser(a.User)
	}
	l.audit(a.Via, "kill", store.NormalizeUser(a.User), "ok", "", "", fmt.Sprintf("id=%s closed=%d", a.ID, n))
	return n, nil
}

func (l *Local) audit(via, action, user, outcome, rule, apID, detail string) {
	if via == "" {
		via = "cli"
	}
	l.Auth.Store().Audit(store.AuditRecord{Time: l.now(), Action: action, Via: via, User: user,
		Outcome: outcome, Rule: rule, AppPasswordID: apID, Detail: detail})
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

func anyFold(want, have []string) bool {
	return slices.ContainsFunc(want, func(w string) bool { return containsFold(have, w) })
}
