// Package auth is the one login service every front-end calls (docs/contract.md §3). It
// looks the user up in the directory, verifies the secret (an app password;
// the primary password only from a trusted network), asks policy.Decide,
// writes the audit record, notes the last use and returns a Result whose
// Outcome maps to the protocol answers of docs/contract.md §4.
//
// Unknown users and wrong passwords cost the same: the app-password check (one
// HMAC and one index lookup) runs whether or not the user exists, and both
// return the same generic outcome.
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

var _ login.Authenticator = (*Service)(nil)

// Throttler limits repeated failures (docs/contract.md §7). Implementations are safe for
// concurrent use.
type Throttler interface {
	// Check reports whether a try from ip for user is refused outright, and
	// how long to wait before answering a failure.
	Check(ip netip.Addr, user string) (delay time.Duration, blocked bool)
	// Failure records a failed try.
	Failure(ip netip.Addr, user string)
	// Success records a successful login.
	Success(ip netip.Addr, user string)
}

// Options configure a Service.
type Options struct {
	Store     store.Store
	Directory directory.Directory
	// Policy is the initial policy; SetPolicy swaps it on reload.
	Policy *policy.Config
	// Throttle may be nil: no throttling.
	Throttle Throttler
	// Logger gets one line per decision; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Observe, if set, is called after every decision (metrics).
	Observe func(req login.Request, res login.Result, took time.Duration)
}

// Service is the login service. It is safe for concurrent use.
type Service struct {
	store store.Store
	// rt is the policy and directory in force, published together: a login
	// loads it once and never sees a new policy with an old directory.
	rt       atomic.Pointer[Runtime]
	setMu    sync.Mutex // serialises SetPolicy/SetDirectory (copy on write)
	throttle Throttler
	log      *slog.Logger
	now      func() time.Time
	observe  func(login.Request, login.Result, time.Duration)
}

// Runtime is the part of a configuration a login reads: one immutable
// value, swapped whole by SetRuntime on reload.
type Runtime struct {
	Policy    *policy.Config
	Directory directory.Directory
	// Upstreams are where allowed sessions go, by protocol (policy.IMAP,
	// policy.SMTP, policy.LDAP); an allowed Result carries its protocol's
	// (login.Result.Upstream). Nil or missing: the front-end's own.
	Upstreams map[string]*upstream.Config
}

// New returns a login service.
func New(o Options) *Service {
	s := &Service{store: o.Store, throttle: o.Throttle, log: o.Logger, now: o.Now, observe: o.Observe}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	p := o.Policy
	if p == nil {
		d := policy.Default()
		p = &d
	}
	s.rt.Store(&Runtime{Policy: p, Directory: o.Directory})
	return s
}

// SetRuntime atomically replaces the policy and the directory together for
// new logins (and the re-decisions of live sessions).
func (s *Service) SetRuntime(rt Runtime) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.rt.Store(&rt)
}

// Runtime returns the policy and directory in force, as one value.
func (s *Service) Runtime() Runtime { return *s.rt.Load() }

// SetPolicy atomically replaces the policy for new logins.
func (s *Service) SetPolicy(p *policy.Config) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	rt := *s.rt.Load()
	rt.Policy = p
	s.rt.Store(&rt)
}

// SetDirectory atomically replaces the directory for new logins.
func (s *Service) SetDirectory(d directory.Directory) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	rt := *s.rt.Load()
	rt.Directory = d
	s.rt.Store(&rt)
}

// Policy returns the policy in force.
func (s *Service) Policy() *policy.Config { return s.rt.Load().Policy }

// Directory returns the directory in force.
func (s *Service) Directory() directory.Directory { return s.rt.Load().Directory }

// Store returns the app-password store.
func (s *Service) Store() store.Store { return s.store }

// CredentialsAccepted reports whether credentials may be offered on a
// connection (docs/contract.md §3 step 1), for what front-ends advertise.
func (s *Service) CredentialsAccepted(tls bool, ip netip.Addr) bool {
	return s.rt.Load().Policy.CredentialsAccepted(tls, ip)
}

// Login decides one login attempt, with every side effect: throttle
// accounting and delay, audit record, last use, one log line.
func (s *Service) Login(ctx context.Context, req login.Request) login.Result {
	start := time.Now()
	ev := s.evaluate(ctx, req, false)
	s.record(req, ev)
	if !ev.res.Allowed() && ev.delay > 0 {
		t := time.NewTimer(ev.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if s.observe != nil {
		s.observe(req, ev.res, time.Since(start))
	}
	return ev.res
}

// Explain evaluates a login like Login but without side effects: no audit,
// no last use, no throttle accounting, no delay. With an empty secret the
// secret is not checked and the trace says so.
func (s *Service) Explain(ctx context.Context, req login.Request) login.Result {
	return s.evaluate(ctx, req, true).res
}

// evaluation is a decision with what its side effects need.
type evaluation struct {
	res   login.Result
	delay time.Duration
	// name is the canonical name when the directory resolved the login
	// (whether or not the secret was right), else the login as typed,
	// normalised: the throttle's user key and the audit record's user
	// (docs/identity.md).
	name string
}

// evaluate runs the decision. explain means: build the trace, and leave
// the throttle state alone (no side effects).
func (s *Service) evaluate(ctx context.Context, req login.Request, explain bool) evaluation {
	rt := s.rt.Load()
	pol, dir := rt.Policy, rt.Directory
	in := policy.Input{
		Request: policy.Request{User: req.User, IP: req.IP, Protocol: req.Protocol, TLS: req.TLS},
		Now:     s.now(),
		NoTrace: !explain,
	}
	ev := evaluation{name: store.NormalizeUser(req.User)}
	// The throttle is asked twice: under the login as typed before the
	// directory (a blocked client or canonical name costs no directory
	// work), and under the canonical name once it is known, so that
	// spelling a name differently (ALICE, alice@example.com) does not buy
	// a fresh budget.
	if !explain && s.throttle != nil {
		ev.delay, in.Throttled = s.throttle.Check(req.IP, ev.name)
	}
	if d, ok := policy.Precheck(pol, in); !ok {
		ev.res = login.Result{Decision: d}
		return ev
	}

	u, err := dir.Lookup(ctx, req.User)
	switch {
	case errors.Is(err, directory.ErrNoSuchUser):
		u = nil
	case err != nil:
		s.log.Warn("directory lookup failed", "user", req.User, "proto", req.Protocol, "err", err)
		ev.res, ev.delay = unavailable("directory unavailable"), 0
		return ev
	}
	if u != nil && u.Name != ev.name {
		ev.name = u.Name
		if !explain && s.throttle != nil {
			delay, blocked := s.throttle.Check(req.IP, ev.name)
			ev.delay = max(ev.delay, delay)
			if blocked {
				in.Throttled = true
				d, _ := policy.Precheck(pol, in)
				ev.res = login.Result{Decision: d}
				return ev
			}
		}
	}
	// The app-password check runs whether or not the user exists, so that
	// unknown users cost the same as wrong passwords.
	var cred *policy.Credential
	var ap *store.AppPassword
	rec, err := s.store.Verify(ctx, ev.name, req.Secret)
	switch {
	case err == nil:
		ap = &rec
		cred = CredentialOf(rec)
	case errors.Is(err, store.ErrNotFound):
	default:
		s.log.Warn("store verify failed", "user", req.User, "proto", req.Protocol, "err", err)
		ev.res, ev.delay = unavailable("store unavailable"), 0
		return ev
	}
	if u != nil && cred == nil && req.Secret != "" && policy.InNetworks(req.IP, pol.TrustedNetworks) {
		switch err := dir.CheckPassword(ctx, u, req.Secret); {
		case err == nil:
			cred = &policy.Credential{Kind: policy.Primary}
		case errors.Is(err, directory.ErrBadPassword):
		default:
			s.log.Warn("directory password check failed", "user", u.Name, "err", err)
			ev.res, ev.delay = unavailable("directory unavailable"), 0
			return ev
		}
	}
	switch {
	case u != nil:
		in.User = policyUser(u)
	case cred == nil && !explain:
		// An unknown user with no credential is refused at the secret
		// step whatever the user; deciding it with a stand-in user (built
		// like the directory's copy of a real one) makes it cost what a
		// known user with a wrong password costs (docs/contract.md §7).
		in.User = policyUser(standIn(ev.name))
	}
	in.Credential = cred
	ev.res = login.Result{Decision: policy.Decide(pol, in)}
	if up := rt.Upstreams[req.Protocol]; up != nil && ev.res.Allowed() {
		ev.res.Upstream = up // never a typed nil in the interface
	}
	if cred != nil && u != nil {
		ev.res.User = LoginUser(u)
		if ap != nil {
			ev.res.AppPassword = &login.AppPassword{ID: ap.ID, Name: ap.Name}
		}
	}
	return ev
}

// LoginUser is the front-ends' view of a directory user: the one place a
// directory.User becomes a login.User.
func LoginUser(u *directory.User) *login.User {
	return &login.User{Name: u.Name, DN: u.DN, Addresses: u.Addresses}
}

// standIn is the user an unknown login is decided as: allocated and filled
// like the directory's copy of a real entry, and never returned.
func standIn(name string) *directory.User {
	return &directory.User{Name: name, Addresses: append([]string(nil), name), Groups: append([]string(nil), "")}
}

func policyUser(u *directory.User) *policy.User {
	return &policy.User{Name: u.Name, Groups: u.Groups, Admin: u.Admin,
		Disabled: u.Disabled, PasswordChanged: u.PasswordChanged}
}

func unavailable(reason string) login.Result {
	return login.Result{Decision: policy.Decision{Outcome: policy.Unavailable, Rule: "unavailable", Reason: reason}}
}

// CredentialOf is the policy's view of an app password.
func CredentialOf(ap store.AppPassword) *policy.Credential {
	return &policy.Credential{
		Kind: policy.AppPassword, ID: ap.ID, Name: ap.Name, Created: ap.Created,
		Expires: ap.Expires, Scope: ap.Scope, Networks: ap.Networks, LastUsed: ap.LastUse.Time,
	}
}

// record does the side effects of a decision: throttle accounting, audit,
// last use and the log line, all under the canonical name when the
// directory knows the login.
func (s *Service) record(req login.Request, ev evaluation) {
	res, user := ev.res, ev.name
	if s.throttle != nil {
		switch res.Outcome {
		case policy.Allow:
			s.throttle.Success(req.IP, user)
		case policy.BadCredentials:
			s.throttle.Failure(req.IP, user)
		}
	}
	outcome := "deny"
	if res.Allowed() {
		outcome = "allow"
	}
	apID := res.AppPasswordID()
	s.store.Audit(store.AuditRecord{
		Time: s.now(), Action: "login", Via: req.Protocol, User: user, Protocol: req.Protocol,
		IP: req.IP.String(), Outcome: outcome, Rule: string(res.Rule), AppPasswordID: apID,
		Client: req.Client,
	})
	if res.Allowed() && res.AppPassword != nil {
		s.store.RecordUse(apID, store.LastUse{Time: s.now(), IP: req.IP, Protocol: req.Protocol, Client: req.Client})
	}
	level := slog.LevelInfo
	if !res.Allowed() {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "login",
		"user", user, "ip", req.IP.String(), "proto", req.Protocol, "tls", req.TLS,
		"decision", res.Outcome.String(), "rule", string(res.Rule), "app_password", apID)
}
