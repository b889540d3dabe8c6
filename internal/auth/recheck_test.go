package auth

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

// TestRecheck: a live session is re-decided by policy.Decide against the
// store, the directory and the policy in force; each way a session can stop
// passing closes it with the rule that says why, and nothing else is closed.
func TestRecheck(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ip := addr("198.51.100.7")
	alice, _ := e.create(t, store.CreateRequest{User: "alice"})
	revoked, _ := e.create(t, store.CreateRequest{User: "alice", Name: "Old phone"})
	expiring, _ := e.create(t, store.CreateRequest{User: "alice", Name: "Short", Expires: t0.Add(time.Hour)})
	dave, _ := e.create(t, store.CreateRequest{User: "dave"})
	carol, _ := e.create(t, store.CreateRequest{User: "carol"})
	if _, err := e.bolt.Revoke(ctx, "alice", store.Selector{ID: revoked.ID}); err != nil {
		t.Fatal(err)
	}
	live := []session.Info{
		{ID: "ok", User: "alice", AppPasswordID: alice.ID, Protocol: policy.IMAP, IP: ip, TLS: true, Started: t0},
		{ID: "revoked", User: "alice", AppPasswordID: revoked.ID, Protocol: policy.IMAP, IP: ip, TLS: true, Started: t0},
		{ID: "expired", User: "alice", AppPasswordID: expiring.ID, Protocol: policy.SMTP, IP: ip, TLS: true, Started: t0},
		{ID: "disabled", User: "carol", AppPasswordID: carol.ID, Protocol: policy.IMAP, IP: ip, TLS: true, Started: t0},
		{ID: "admin", User: "bob", Protocol: policy.IMAP, IP: addr("10.1.2.3"), TLS: true, Started: t0},
		{ID: "gone", User: "zed", AppPasswordID: "y", Protocol: policy.IMAP, IP: ip, TLS: true, Started: t0},
		{ID: "ldap-off", User: "dave", AppPasswordID: dave.ID, Protocol: policy.LDAP, IP: ip, TLS: true, Started: t0},
		{ID: "primary", User: "alice", Protocol: policy.IMAP, IP: addr("10.1.2.3"), TLS: true, Started: t0},
	}
	p := testPolicy()
	p.Protocols = []string{policy.IMAP, policy.SMTP}
	e.svc.SetPolicy(p)
	e.clock.Advance(2 * time.Hour)

	got := map[string]string{}
	for _, v := range e.svc.Recheck(ctx, live) {
		got[v.ID] = v.Rule
	}
	want := map[string]string{
		"revoked": "bad_credentials", "expired": "expired", "disabled": "user_disabled",
		"admin": "admin", "gone": "bad_credentials", "ldap-off": "protocol_disabled",
	}
	for id, rule := range want {
		if got[id] != rule {
			t.Errorf("session %s: got rule %q, want %q", id, got[id], rule)
		}
	}
	for _, id := range []string{"ok", "primary"} {
		if r, ok := got[id]; ok {
			t.Errorf("session %s closed (%s), want kept", id, r)
		}
	}

	// A reload that blocks alice closes her sessions, not dave's IMAP one.
	p2 := *p
	p2.BlockedUsers = []string{"alice"}
	e.svc.SetRuntime(Runtime{Policy: &p2, Directory: e.svc.Directory()})
	var closed []string
	for _, v := range e.svc.Recheck(ctx, []session.Info{live[0], live[7], {ID: "dave", User: "dave", AppPasswordID: dave.ID, Protocol: policy.IMAP, IP: ip, TLS: true, Started: t0}}) {
		closed = append(closed, v.ID+"/"+v.Rule)
	}
	slices.Sort(closed)
	if !slices.Equal(closed, []string{"ok/user_blocked", "primary/user_blocked"}) {
		t.Errorf("after blocking alice: closed %v, want alice's two sessions with user_blocked", closed)
	}
}

// failingDirectory fails every lookup.
type failingDirectory struct{ directory.Directory }

func (failingDirectory) Lookup(context.Context, string) (*directory.User, error) {
	return nil, context.DeadlineExceeded
}

// TestRecheckDirectoryOutage: a directory that cannot be asked closes
// nothing.
func TestRecheckDirectoryOutage(t *testing.T) {
	e := newEnv(t)
	e.svc.SetDirectory(failingDirectory{e.svc.Directory()})
	v := e.svc.Recheck(context.Background(), []session.Info{
		{ID: "a", User: "alice", AppPasswordID: "x", Protocol: policy.IMAP, TLS: true},
		{ID: "b", User: "dave", AppPasswordID: "y", Protocol: policy.IMAP, TLS: true},
	})
	if len(v) != 0 {
		t.Errorf("directory outage: closed %v, want nothing", v)
	}
	if n := strings.Count(e.logs.String(), "session re-check"); n != 1 {
		t.Errorf("directory outage: %d log lines, want one per re-check", n)
	}
}
