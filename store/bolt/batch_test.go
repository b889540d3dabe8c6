package bolt

import (
	"context"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
)

func TestBackgroundFlush(t *testing.T) {
	b := openTest(t, "", func(o *Options) { o.FlushInterval = 20 * time.Millisecond })
	p, _ := mustCreate(t, b, "alice", "Laptop")
	before := b.WriteTxs()
	b.RecordUse(p.ID, store.LastUse{Protocol: "imap"})
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
		b.RecordUse(got.ID, store.LastUse{Time: time.Unix(int64(1e9+i), 0), Protocol: "imap"})
		b.Audit(store.AuditRecord{Action: "login", User: "alice", Outcome: "allow", AppPasswordID: got.ID})
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
	recs, _ := b.AuditLog(ctx, store.AuditQuery{})
	if len(recs) != 1000 {
		t.Errorf("audit: got %d records, want 1000", len(recs))
	}
}
