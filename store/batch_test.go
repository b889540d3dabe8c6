package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestRecordUseFlushAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openTest(t, dir)
	p, secret := mustCreate(t, b, "alice", "Laptop")
	t1 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	use := LastUse{Time: t1, IP: netip.MustParseAddr("2001:db8::1"), Protocol: "imap", Client: "Thunderbird"}
	b.RecordUse(p.ID, use)
	b.RecordUse(p.ID, LastUse{Time: t1.Add(-time.Hour), Protocol: "smtp"}) // older: ignored

	// Pending use is merged into Verify and List before any flush.
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
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTest(t, dir)
	got, err = b.Verify(ctx, "alice", secret)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUse != use {
		t.Errorf("after reopen: got last use %+v, want %+v", got.LastUse, use)
	}
}

func TestCloseFlushes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openTest(t, dir)
	p, _ := mustCreate(t, b, "alice", "Laptop")
	use := LastUse{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Protocol: "ldap"}
	b.RecordUse(p.ID, use)
	b.Audit(AuditRecord{Action: "login", User: "alice", Outcome: "allow"})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTest(t, dir)
	list, _ := b.List(ctx, "alice")
	if len(list) != 1 || list[0].LastUse != use {
		t.Errorf("after Close and reopen: got %+v, want last use %+v", list, use)
	}
	recs, _ := b.AuditLog(ctx, AuditQuery{})
	if len(recs) != 1 {
		t.Errorf("audit after Close and reopen: got %d records, want 1", len(recs))
	}
}

func TestBackgroundFlush(t *testing.T) {
	b := openTest(t, "", func(o *BoltOptions) { o.FlushInterval = 20 * time.Millisecond })
	p, _ := mustCreate(t, b, "alice", "Laptop")
	before := b.WriteTxs()
	b.RecordUse(p.ID, LastUse{Protocol: "imap"})
	deadline := time.Now().Add(5 * time.Second)
	for b.WriteTxs() == before {
		if time.Now().After(deadline) {
			t.Fatal("no background flush within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Nothing pending: the ticker must not write.
	time.Sleep(50 * time.Millisecond)
	after := b.WriteTxs()
	time.Sleep(100 * time.Millisecond)
	if got := b.WriteTxs(); got != after {
		t.Errorf("idle flusher wrote %d transactions, want 0", got-after)
	}
}

func TestRecordUseOfRevokedIgnored(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	p, _ := mustCreate(t, b, "alice", "Laptop")
	if _, err := b.Revoke(ctx, "alice", Selector{ID: p.ID}); err != nil {
		t.Fatal(err)
	}
	b.RecordUse(p.ID, LastUse{Protocol: "imap"}) // a login that raced the revoke
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckIndex(); err != nil {
		t.Fatal(err)
	}
	if list, _ := b.List(ctx, "alice"); len(list) != 0 {
		t.Errorf("revoked password came back: %+v", list)
	}
}

// TestVerifyRecordUseNoWrites is the point of batching: logins must not cost
// a write transaction (an fsync) each.
func TestVerifyRecordUseNoWrites(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	p, secret := mustCreate(t, b, "alice", "Laptop")
	txs, pages := b.WriteTxs(), b.BoltWrites()
	for i := range 1000 {
		got, err := b.Verify(ctx, "alice", secret)
		if err != nil || got.ID != p.ID {
			t.Fatalf("Verify %d: got %v, %v", i, got.ID, err)
		}
		b.RecordUse(got.ID, LastUse{Time: time.Unix(int64(1e9+i), 0), Protocol: "imap"})
		b.Audit(AuditRecord{Action: "login", User: "alice", Outcome: "allow", AppPasswordID: got.ID})
	}
	if got := b.WriteTxs() - txs; got != 0 {
		t.Errorf("1000 Verify+RecordUse+Audit: got %d write transactions, want 0", got)
	}
	if got := b.BoltWrites() - pages; got != 0 {
		t.Errorf("1000 Verify+RecordUse+Audit: bbolt wrote %d pages, want 0", got)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.WriteTxs() - txs; got != 1 {
		t.Errorf("Flush: got %d write transactions, want 1", got)
	}
	list, _ := b.List(ctx, "alice")
	if want := time.Unix(1e9+999, 0).UTC(); !list[0].LastUse.Time.Equal(want) {
		t.Errorf("last use: got %v, want %v (the latest)", list[0].LastUse.Time, want)
	}
	recs, _ := b.AuditLog(ctx, AuditQuery{})
	if len(recs) != 1000 {
		t.Errorf("audit: got %d records, want 1000", len(recs))
	}
}

func TestAuditQueueBounded(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "", func(o *BoltOptions) { o.MaxPending = 10 })
	// Holding flushMu keeps the (kicked) flusher from draining the queue, as
	// a slow disk would.
	b.flushMu.Lock()
	for i := range 25 {
		b.Audit(AuditRecord{Action: "login", User: "alice", Outcome: "allow", Detail: string(rune('a' + i))})
	}
	b.flushMu.Unlock()
	recs, err := b.AuditLog(ctx, AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var details []string
	for _, r := range recs {
		details = append(details, r.Detail)
	}
	want := "[p q r s t u v w x y 15 audit records dropped: queue of 10 full]"
	if got := fmt.Sprint(details); got != want {
		t.Errorf("audit log: got %s, want %s (oldest dropped, gap recorded)", got, want)
	}
	if res, err := b.VerifyAudit(ctx); err != nil || !res.OK {
		t.Errorf("VerifyAudit: got %+v, %v; want OK", res, err)
	}
}
