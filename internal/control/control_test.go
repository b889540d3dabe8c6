package control

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// changedDir reports a primary-password change for every user it finds.
type changedDir struct {
	directory.Directory
	changed time.Time
}

func (d changedDir) Lookup(ctx context.Context, login string) (*directory.User, error) {
	u, err := d.Directory.Lookup(ctx, login)
	if err == nil {
		u.PasswordChanged = d.changed
	}
	return u, err
}

type testEnv struct {
	local *Service
	st    *bolt.Store
	reg   *session.Registry
	pol   *policy.Config
	dir   directory.Directory
	now   time.Time
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{now: t0}
	clock := func() time.Time { return e.now }
	st, err := bolt.Open(context.Background(), bolt.Options{Path: filepath.Join(t.TempDir(), "l.db"), Now: clock, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	static, err := directory.NewStatic([]directory.StaticUser{
		{Name: "alice", Addresses: []string{"alice@example.com", "team@example.com"}, Groups: []string{"staff"}},
		{Name: "bob", Addresses: []string{"bob@example.com", "team@example.com"}},
		{Name: "root", Admin: true},
		{Name: "printer", Groups: []string{"devices"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := policy.Default()
	e.st, e.reg, e.pol, e.dir = st, session.New(), &p, static
	e.local = &Service{Store: st, Directory: func() directory.Directory { return e.dir }, Policy: func() *policy.Config { return e.pol },
		Registry: e.reg, Now: clock}
	return e
}

// TestCanonicalNameEveryEntryPoint: whatever spelling names alice — her
// name in any case, her address — create, list, revoke, audit, sessions and
// kill all act on "alice" (issue #13.5: create under alice@example.com used
// to store under alice while list/revoke under the same spelling saw nothing).
func TestCanonicalNameEveryEntryPoint(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c, err := e.local.CreateAppPassword(ctx, CreateArgs{User: "Alice@Example.com", Name: "Laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if c.AppPassword.User != "alice" {
		t.Fatalf("created under %q, want alice", c.AppPassword.User)
	}
	for _, spelling := range []string{"alice@example.com", "ALICE", " alice "} {
		l, err := e.local.ListAppPasswords(ctx, spelling)
		if err != nil || len(l) != 1 || l[0].ID != c.AppPassword.ID {
			t.Errorf("list --user %q: got %+v, %v; want the one password", spelling, l, err)
		}
	}
	var killed atomic.Int32
	e.reg.Register(session.Info{User: "alice", AppPasswordID: c.AppPassword.ID, Protocol: policy.IMAP}, func() { killed.Add(1) })
	e.reg.Register(session.Info{User: "bob", Protocol: policy.IMAP}, func() { t.Error("bob's session killed") })
	if s, err := e.local.Sessions(ctx, "alice@example.com"); err != nil || len(s) != 1 || s[0].User != "alice" {
		t.Errorf("sessions --user alice@example.com: got %+v, %v", s, err)
	}
	if n, err := e.local.KillSessions(ctx, KillArgs{User: "ALICE@example.com"}); err != nil || n != 1 || killed.Load() != 1 {
		t.Errorf("sessions kill --user ALICE@example.com: got %d, %v (killed %d), want 1", n, err, killed.Load())
	}
	r, err := e.local.RevokeAppPasswords(ctx, RevokeArgs{User: "alice@example.com", All: true})
	if err != nil || len(r.Revoked) != 1 {
		t.Errorf("revoke --all --user alice@example.com: got %+v, %v; want one revoked", r, err)
	}
	recs, err := e.local.Audit(ctx, AuditArgs{User: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]bool{}
	for _, r := range recs {
		if r.User != "alice" {
			t.Errorf("audit record %s names %q, want alice", r.Action, r.User)
		}
		actions[r.Action] = true
	}
	for _, a := range []string{"create", "revoke", "kill"} {
		if !actions[a] {
			t.Errorf("audit --user alice@example.com: no %s record in %+v", a, recs)
		}
	}
	// A shared address names nobody: create refuses it, list sees nothing.
	if _, err := e.local.CreateAppPassword(ctx, CreateArgs{User: "team@example.com", Name: "x"}); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("create for a shared address: %v, want ErrUnknownUser", err)
	}
	// DN shapes name nobody.
	if _, err := e.local.CreateAppPassword(ctx, CreateArgs{User: "uid=alice,ou=people,dc=example,dc=com", Name: "x"}); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("create for a DN: %v, want ErrUnknownUser", err)
	}
}

// TestRemovedUserRecords: records of a user the directory no longer knows
// are still listed and revoked under their canonical name.
func TestRemovedUserRecords(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	if _, _, err := e.st.Create(ctx, store.CreateRequest{User: "zed", Name: "Phone"}); err != nil {
		t.Fatal(err)
	}
	if l, err := e.local.ListAppPasswords(ctx, "Zed"); err != nil || len(l) != 1 {
		t.Errorf("list zed: got %+v, %v; want one", l, err)
	}
	if r, err := e.local.RevokeAppPasswords(ctx, RevokeArgs{User: "zed", All: true}); err != nil || len(r.Revoked) != 1 {
		t.Errorf("revoke zed: got %+v, %v; want one", r, err)
	}
}

// TestResolveClaim: the portal's claim maps onto a user by exact match of
// the chosen attribute; DN shapes and other routes are refused.
func TestResolveClaim(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		claim, attr, want string // want "" = refused
	}{
		{"alice", "", "alice"},
		{"ALICE", ClaimName, "alice"},
		{"alice@example.com", ClaimName, ""}, // an address is not a name
		{"uid=alice,ou=people,dc=example,dc=com", "", ""},
		{"cn=alice", "", ""},
		{"alice,", "", ""},
		{"nobody", "", ""},
		{"alice@example.com", ClaimMail, "alice"},
		{"Bob@Example.com", ClaimMail, "bob"},
		{"alice", ClaimMail, ""},
		{"team@example.com", ClaimMail, ""}, // shared: nobody's
		{"uid=alice@example.com", ClaimMail, ""},
	}
	for _, tt := range tests {
		got, err := e.local.ResolveClaim(ctx, ClaimArgs{Claim: tt.claim, Attribute: tt.attr})
		if tt.want == "" {
			if !errors.Is(err, ErrUnknownUser) {
				t.Errorf("ResolveClaim(%q, %q) = %q, %v; want ErrUnknownUser", tt.claim, tt.attr, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveClaim(%q, %q) = %q, %v; want %q", tt.claim, tt.attr, got, err, tt.want)
		}
	}
	if _, err := e.local.ResolveClaim(ctx, ClaimArgs{Claim: "alice", Attribute: "uid"}); !errors.Is(err, ErrUsage) {
		t.Errorf("unknown attribute: %v, want ErrUsage", err)
	}
}

// TestRulesFromPolicy: create refuses what policy.MayUseLegacyAuth refuses,
// list shows what policy.CredentialStatus says — one set of rules with the
// login decision (issue #14.6).
func TestRulesFromPolicy(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	if _, err := e.local.CreateAppPassword(ctx, CreateArgs{User: "root", Name: "x"}); !errors.Is(err, ErrAdmin) {
		t.Errorf("create for an admin: %v, want ErrAdmin", err)
	}
	e.pol.BlockedGroups = []string{"Devices"}
	if _, err := e.local.CreateAppPassword(ctx, CreateArgs{User: "printer", Name: "x"}); !errors.Is(err, ErrBlocked) {
		t.Errorf("create for a blocked group: %v, want ErrBlocked", err)
	}
	recs, _ := e.local.Audit(ctx, AuditArgs{User: "printer"})
	if len(recs) != 1 || recs[0].Rule != string(policy.RuleGroupBlocked) {
		t.Errorf("audit of the refusal: %+v, want one group_blocked record", recs)
	}

	mk := func(name string, expiresIn time.Duration) {
		if _, err := e.local.CreateAppPassword(ctx, CreateArgs{User: "alice", Name: name, ExpiresIn: expiresIn}); err != nil {
			t.Fatal(err)
		}
	}
	mk("old", 0)
	mk("short", time.Hour)
	e.now = t0.Add(48 * time.Hour)
	e.dir = changedDir{e.dir, t0.Add(24 * time.Hour)}
	mk("new", 0)
	e.pol.ExpireUnusedAfter = 0
	want := map[string]string{"old": "password-changed", "short": "expired", "new": "active"}
	check := func() {
		t.Helper()
		l, err := e.local.ListAppPasswords(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range l {
			if x.Status != want[x.Name] {
				t.Errorf("%s: status %q, want %q", x.Name, x.Status, want[x.Name])
			}
		}
	}
	check()
	e.pol.ExpireUnusedAfter = time.Hour
	e.now = e.now.Add(2 * time.Hour)
	want["new"] = "unused-expired"
	check()
	e.pol.RevokeOnPasswordChange = false
	want["old"] = "unused-expired"
	check()
}

// TestUsageSpeaksTheDomain: usage errors are read by portal users too, so
// they name what to choose, never a command-line flag.
func TestUsageSpeaksTheDomain(t *testing.T) {
	e := newTestEnv(t)
	e.local.Explainer = auth.New(auth.Options{Store: e.st, Directory: e.dir, Policy: e.pol})
	ctx := context.Background()
	errs := []error{}
	_, err := e.local.RevokeAppPasswords(ctx, RevokeArgs{User: "alice"})
	errs = append(errs, err)
	_, err = e.local.KillSessions(ctx, KillArgs{})
	errs = append(errs, err)
	_, err = e.local.Explain(ctx, ExplainArgs{User: "alice", Protocol: "pop3"})
	errs = append(errs, err)
	_, err = e.local.Explain(ctx, ExplainArgs{User: "alice", Protocol: "imap"})
	errs = append(errs, err)
	_, err = e.local.CreateAppPassword(ctx, CreateArgs{User: "alice", Name: ""})
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, ErrUsage) {
			t.Errorf("case %d: %v, want ErrUsage", i, err)
		} else if strings.Contains(err.Error(), "--") {
			t.Errorf("case %d: %q names a command-line flag", i, err)
		}
	}
}
