package auth

import (
	"context"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/upstream"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

func TestLoginAppPassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ap, secret := e.create(t, store.CreateRequest{User: "alice"})
	e.clock.Advance(time.Hour)

	for _, login := range []string{"alice", "Alice ", "alice@example.com"} {
		r := req(login, strings.ToLower(strings.ReplaceAll(secret, "-", "")))
		res := e.svc.Login(ctx, r)
		if res.Outcome != policy.Allow || res.Rule != policy.RuleAllowAppPassword {
			t.Fatalf("Login(%q): got %s/%s, want allow/app_password\n%s", login, res.Outcome, res.Rule, res.TraceString())
		}
		if res.User == nil || res.User.Name != "alice" {
			t.Errorf("Login(%q): got user %+v, want alice", login, res.User)
		}
		if res.AppPassword == nil || res.AppPassword.ID != ap.ID {
			t.Errorf("Login(%q): got app password %+v, want id %s", login, res.AppPassword, ap.ID)
		}
	}
	if err := e.bolt.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs := e.auditLog(t)
	if len(recs) != 3 {
		t.Fatalf("got %d login audit records, want 3: %+v", len(recs), recs)
	}
	got := recs[0]
	if got.User != "alice" || got.Outcome != "allow" || got.Rule != string(policy.RuleAllowAppPassword) ||
		got.AppPasswordID != ap.ID || got.IP != "198.51.100.7" || got.Protocol != policy.IMAP || got.Client != "Thunderbird" {
		t.Errorf("audit record: got %+v, want alice allow app_password %s from 198.51.100.7 imap", got, ap.ID)
	}
	list, err := e.bolt.List(ctx, "alice")
	if err != nil || len(list) != 1 {
		t.Fatalf("List: got %v, %v", list, err)
	}
	lu := list[0].LastUse
	if !lu.Time.Equal(t0.Add(time.Hour)) || lu.IP != addr("198.51.100.7") || lu.Protocol != policy.IMAP || lu.Client != "Thunderbird" {
		t.Errorf("last use: got %+v, want %v from 198.51.100.7 imap Thunderbird", lu, t0.Add(time.Hour))
	}
	if _, _, s := e.throttle.calls(); s != 3 {
		t.Errorf("throttle successes: got %d, want 3", s)
	}
	if logs := e.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, store.Normalize(secret)) {
		t.Errorf("logs contain the secret:\n%s", logs)
	}
}

// TestBadCredentialsIdentical: a wrong secret, an unknown user and another
// user's secret all give the same answer, and all cost one store.Verify.
func TestBadCredentialsIdentical(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, aliceSecret := e.create(t, store.CreateRequest{User: "alice"})
	_, daveSecret := e.create(t, store.CreateRequest{User: "dave"})
	tests := []struct{ name, user, secret string }{
		{"wrong secret", "alice", store.Generate()},
		{"unknown user", "nobody", store.Generate()},
		{"unknown user with a real secret", "nobody", aliceSecret},
		{"another user's secret", "alice", daveSecret},
		{"empty secret", "alice", ""},
		{"primary password from outside", "alice", primaryPW},
	}
	var first *login.Result
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.store.verifies.Load()
			res := e.svc.Login(ctx, req(tt.user, tt.secret))
			if res.Outcome != policy.BadCredentials || res.Rule != policy.RuleBadCredentials || res.Reason != "" {
				t.Fatalf("got %s/%s/%q, want bad_credentials with no reason", res.Outcome, res.Rule, res.Reason)
			}
			if res.User != nil || res.AppPassword != nil {
				t.Errorf("got user %+v, app password %+v, want nil for a failure", res.User, res.AppPassword)
			}
			if n := e.store.verifies.Load() - before; n != 1 {
				t.Errorf("store.Verify calls: got %d, want 1 (same cost whether or not the user exists)", n)
			}
			if first == nil {
				first = &res
			} else if res.Outcome != first.Outcome || res.Rule != first.Rule || res.Reason != first.Reason {
				t.Errorf("got %s/%s/%q, want the same as the first case %s/%s/%q",
					res.Outcome, res.Rule, res.Reason, first.Outcome, first.Rule, first.Reason)
			}
		})
	}
	if e.dir.checks.Load() != 0 {
		t.Errorf("directory CheckPassword calls from an untrusted network: got %d, want 0", e.dir.checks.Load())
	}
	_, f, _ := e.throttle.calls()
	if f != len(tests) {
		t.Errorf("throttle failures: got %d, want %d", f, len(tests))
	}
	for _, r := range e.auditLog(t) {
		if r.Outcome != "deny" || r.Rule != string(policy.RuleBadCredentials) {
			t.Errorf("audit record: got %s/%s, want deny/bad_credentials", r.Outcome, r.Rule)
		}
	}
}

func TestPrimaryPassword(t *testing.T) {
	tests := []struct {
		name       string
		user       string
		secret     string
		ip         string
		want       policy.Outcome
		wantRule   policy.Rule
		wantChecks int64
	}{
		{"trusted IPv4", "alice", primaryPW, "10.1.2.3", policy.Allow, policy.RuleAllowPrimary, 1},
		{"trusted IPv6", "alice", primaryPW, "fd00::5", policy.Allow, policy.RuleAllowPrimary, 1},
		{"trusted IPv4-mapped", "alice", primaryPW, "::ffff:10.1.2.3", policy.Allow, policy.RuleAllowPrimary, 1},
		{"by address", "alice@example.com", primaryPW, "10.1.2.3", policy.Allow, policy.RuleAllowPrimary, 1},
		{"untrusted", "alice", primaryPW, "198.51.100.7", policy.BadCredentials, policy.RuleBadCredentials, 0},
		{"wrong password, trusted", "alice", "guess", "10.1.2.3", policy.BadCredentials, policy.RuleBadCredentials, 1},
		{"user without primary password", "dave", "anything", "10.1.2.3", policy.BadCredentials, policy.RuleBadCredentials, 1},
		{"unknown user, trusted", "nobody", primaryPW, "10.1.2.3", policy.BadCredentials, policy.RuleBadCredentials, 0},
		{"empty secret is never checked", "alice", "", "10.1.2.3", policy.BadCredentials, policy.RuleBadCredentials, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := req(tt.user, tt.secret)
			r.IP = addr(tt.ip)
			res := e.svc.Login(context.Background(), r)
			if res.Outcome != tt.want || res.Rule != tt.wantRule {
				t.Fatalf("got %s/%s, want %s/%s\n%s", res.Outcome, res.Rule, tt.want, tt.wantRule, res.TraceString())
			}
			if got := e.dir.checks.Load(); got != tt.wantChecks {
				t.Errorf("directory CheckPassword calls: got %d, want %d", got, tt.wantChecks)
			}
			if tt.want == policy.Allow {
				if res.User == nil || res.User.Name != "alice" || res.AppPassword != nil {
					t.Errorf("got user %+v, app password %+v; want alice and no app password", res.User, res.AppPassword)
				}
			}
			if strings.Contains(e.logs.String(), primaryPW) {
				t.Errorf("logs contain the primary password")
			}
		})
	}
}

func TestPolicyThroughService(t *testing.T) {
	tests := []struct {
		name     string
		user     string
		create   store.CreateRequest
		policy   func(*policy.Config)
		mod      func(*login.Request)
		advance  time.Duration
		want     policy.Outcome
		wantRule policy.Rule
	}{
		{name: "admin", user: "bob", want: policy.Refused, wantRule: policy.RuleAdmin},
		{name: "disabled", user: "carol", want: policy.Refused, wantRule: policy.RuleDisabled},
		{name: "blocked for everyone", user: "alice", policy: func(p *policy.Config) { p.BlockLegacyAuth = true }, want: policy.Refused, wantRule: policy.RuleLegacyBlocked},
		{name: "outside scope", user: "alice", create: store.CreateRequest{Scope: []string{policy.SMTP}}, want: policy.Refused, wantRule: policy.RuleScope},
		{name: "outside networks", user: "alice", create: store.CreateRequest{Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, want: policy.Refused, wantRule: policy.RuleNetwork},
		{name: "expired", user: "alice", create: store.CreateRequest{Expires: t0.Add(time.Hour)}, advance: time.Hour, want: policy.Expired, wantRule: policy.RuleExpired},
		{name: "not yet expired", user: "alice", create: store.CreateRequest{Expires: t0.Add(time.Hour)}, advance: time.Hour - time.Second, want: policy.Allow, wantRule: policy.RuleAllowAppPassword},
		{name: "unused too long", user: "alice", policy: func(p *policy.Config) { p.ExpireUnusedAfter = 24 * time.Hour }, advance: 25 * time.Hour, want: policy.Expired, wantRule: policy.RuleUnused},
		{name: "ldap allowed", user: "alice", mod: func(r *login.Request) { r.Protocol = policy.LDAP }, want: policy.Allow, wantRule: policy.RuleAllowAppPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.policy != nil {
				p := testPolicy()
				tt.policy(p)
				e.svc.SetPolicy(p)
			}
			tt.create.User = tt.user
			ap, secret := e.create(t, tt.create)
			e.clock.Advance(tt.advance)
			r := req(tt.user, secret)
			if tt.mod != nil {
				tt.mod(&r)
			}
			res := e.svc.Login(context.Background(), r)
			if res.Outcome != tt.want || res.Rule != tt.wantRule {
				t.Fatalf("got %s/%s, want %s/%s\n%s", res.Outcome, res.Rule, tt.want, tt.wantRule, res.TraceString())
			}
			if res.Outcome != policy.Allow && res.Reason == "" {
				t.Errorf("refused with an empty reason")
			}
			recs := e.auditLog(t)
			if len(recs) != 1 || recs[0].Rule != string(tt.wantRule) || recs[0].AppPasswordID != ap.ID {
				t.Errorf("audit: got %+v, want one record with rule %s and app password %s", recs, tt.wantRule, ap.ID)
			}
			list, _ := e.bolt.List(context.Background(), tt.user)
			if used := !list[0].LastUse.Time.IsZero(); used != (tt.want == policy.Allow) {
				t.Errorf("last use recorded: got %v, want %v", used, tt.want == policy.Allow)
			}
		})
	}
}

// TestUserGoneFromDirectory: app passwords of a user the directory no longer
// knows do not work, and the failure carries no app password.
func TestUserGoneFromDirectory(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "ghost"})
	res := e.svc.Login(context.Background(), req("ghost", secret))
	if res.Outcome != policy.BadCredentials || res.Rule != policy.RuleBadCredentials || res.Reason != "" {
		t.Fatalf("got %s/%s/%q, want bad_credentials", res.Outcome, res.Rule, res.Reason)
	}
	if res.User != nil {
		t.Errorf("got user %+v, want nil", res.User)
	}
	if res.AppPassword != nil {
		t.Errorf("got app password %s on a failed login, want nil", res.AppPassword.ID)
	}
}

// TestResultNamesTheUpstreamOfItsSnapshot: an allowed login carries the
// upstream of its protocol from the runtime that decided it; a refused one
// carries none.
func TestResultNamesTheUpstreamOfItsSnapshot(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	imapUp, smtpUp := &upstream.Config{Address: "127.0.0.1:143"}, &upstream.Config{Address: "127.0.0.1:587"}
	rt := e.svc.Runtime()
	rt.Upstreams = map[string]*upstream.Config{policy.IMAP: imapUp, policy.SMTP: smtpUp}
	e.svc.SetRuntime(rt)

	for _, c := range []struct {
		proto, secret string
		want          login.Upstream
	}{
		{policy.IMAP, secret, imapUp},
		{policy.SMTP, secret, smtpUp},
		{policy.LDAP, secret, nil}, // none configured for it: a nil interface, not a typed nil
		{policy.IMAP, "wrong-secret", nil},
	} {
		r := req("alice", c.secret)
		r.Protocol = c.proto
		if res := e.svc.Login(ctx, r); res.Upstream != c.want {
			t.Errorf("%s (right secret: %v): upstream %v, want %v (%s)", c.proto, c.secret == secret, res.Upstream, c.want, res.Outcome)
		}
	}
}
