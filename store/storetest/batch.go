package storetest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
)

func testRecordUseFlushAndReopen(t *testing.T, h Harness) {
	ctx := context.Background()
	loc := h.New(t)
	b := h.Open(t, loc)
	p, secret := mustCreate(t, b, "alice", "Laptop")
	t1 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	use := store.LastUse{Time: t1, IP: netip.MustParseAddr("2001:db8::1"), Protocol: "imap", Client: "Thunderbird"}
	b.RecordUse(p.ID, use)
	b.RecordUse(p.ID, store.LastUse{Time: t1.Add(-time.Hour), Protocol: "smtp"}) // older: ignored
	got, err := b.Verify(ctx, "alice", secret)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUse != use {
		t.Errorf("Verify before flush: got last use %+v, want %+v", got.LastUse, use)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := b.List(ctx, "alice")
	if len(list) != 1 || list[0].LastUse != use {
		t.Errorf("List after flush: got %+v, want last use %+v", list, use)
	}
	closeIt(t, b)
	b = h.Open(t, loc)
	got, err = b.Verify(ctx, "alice", secret)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUse != use {
		t.Errorf("after reopen: got last use %+v, want %+v", got.LastUse, use)
	}
	// An older use flushed later does not go back in time.
	b.RecordUse(p.ID, store.LastUse{Time: t1.Add(-time.Hour), Protocol: "smtp"})
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Verify(ctx, "alice", secret); got.LastUse != use {
		t.Errorf("after flushing an older use: got %+v, want %+v", got.LastUse, use)
	}
}

func testCloseFlushes(t *testing.T, h Harness) {
	ctx := context.Background()
	loc := h.New(t)
	b := h.Open(t, loc)
	p, _ := mustCreate(t, b, "alice", "Laptop")
	use := store.LastUse{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Protocol: "ldap"}
	b.RecordUse(p.ID, use)
	b.Audit(store.AuditRecord{Action: "login", User: "alice", Outcome: "allow"})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = h.Open(t, loc)
	list, _ := b.List(ctx, "alice")
	if len(list) != 1 || list[0].LastUse != use {
		t.Errorf("after Close and reopen: got %+v, want last use %+v", list, use)
	}
	recs, _ := b.AuditLog(ctx, store.AuditQuery{})
	if len(recs) != 1 {
		t.Errorf("audit after Close and reopen: got %d records, want 1", len(recs))
	}
}

func testRecordUseOfRevoked(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	p, _ := mustCreate(t, b, "alice", "Laptop")
	if _, err := b.Revoke(ctx, "alice", store.Selector{ID: p.ID}); err != nil {
		t.Fatal(err)
	}
	b.RecordUse(p.ID, store.LastUse{Protocol: "imap"}) // a login that raced the revoke
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if list, _ := b.List(ctx, "alice"); len(list) != 0 {
		t.Errorf("revoked password came back: %+v", list)
	}
	h.check(t, b)
}

// FillAudit writes n login records for users u0..u2 at one-minute steps.
func FillAudit(t testing.TB, b store.Store, n int, start time.Time) {
	t.Helper()
	for i := range n {
		b.Audit(store.AuditRecord{
			Time: start.Add(time.Duration(i) * time.Minute), Action: "login", Via: "imap",
			User: fmt.Sprintf("U%d", i%3), Protocol: "imap", IP: "192.0.2.1", Outcome: "allow",
			Detail: fmt.Sprintf("n=%d", i),
		})
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func testAuditLogQuery(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	FillAudit(t, b, 30, start)
	for _, tc := range []struct {
		name string
		q    store.AuditQuery
		want string
	}{
		{"limit", store.AuditQuery{Limit: 3}, "n=27 n=28 n=29"},
		{"user and limit", store.AuditQuery{User: " u1 ", Limit: 2}, "n=25 n=28"},
		{"since", store.AuditQuery{Since: start.Add(26 * time.Minute)}, "n=26 n=27 n=28 n=29"},
		{"user since", store.AuditQuery{User: "u0", Since: start.Add(20 * time.Minute)}, "n=21 n=24 n=27"},
		{"nothing", store.AuditQuery{User: "nobody"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := b.AuditLog(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := details(recs); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	all, _ := b.AuditLog(ctx, store.AuditQuery{})
	if len(all) != 30 || all[0].Seq != 1 || all[29].Seq != 30 || all[0].Prev != nil || !bytes.Equal(all[1].Prev, all[0].Hash) {
		t.Errorf("chain fields: got %d records, first seq %d, prev links wrong?", len(all), all[0].Seq)
	}
}

func testVerifyAuditAppend(t *testing.T, h Harness) {
	ctx := context.Background()
	loc := h.New(t)
	b := h.Open(t, loc)
	if res, err := b.VerifyAudit(ctx); err != nil || !res.OK || res.Records != 0 {
		t.Errorf("empty log: got %+v, %v; want OK with 0", res, err)
	}
	FillAudit(t, b, 3, time.Now())
	closeIt(t, b)
	b = h.Open(t, loc)
	FillAudit(t, b, 4, time.Now())
	res, err := b.VerifyAudit(ctx)
	if err != nil || !res.OK || res.Records != 7 {
		t.Errorf("after reopen: got %+v, %v; want OK with 7", res, err)
	}
}

// More records than one etcd txn holds, in the order Audit was called.
func testAuditOrder(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	const n = 1234
	FillAudit(t, b, n, time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	all, err := b.AuditLog(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("got %d records, want %d", len(all), n)
	}
	for i, r := range all {
		if want := fmt.Sprintf("n=%d", i); r.Detail != want || r.Seq != uint64(i+1) {
			t.Fatalf("record %d: got seq %d %q, want seq %d %q", i, r.Seq, r.Detail, i+1, want)
		}
	}
	if res, err := b.VerifyAudit(ctx); err != nil || !res.OK || res.Records != n {
		t.Errorf("VerifyAudit: got %+v, %v; want OK with %d", res, err, n)
	}
}
