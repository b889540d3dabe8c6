package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
)

// testAuditPrune: retention removes a prefix of the chain, which still
// verifies from the anchor, after reopening, after appending and after a
// copy to another store.
func testAuditPrune(t *testing.T, h Harness) {
	ctx := context.Background()
	loc := h.New(t)
	s := h.Open(t, loc)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	FillAudit(t, s, 30, start)
	pr, ok := s.(store.BatchWriter)
	if !ok {
		t.Fatalf("%T does not implement store.BatchWriter (PruneAudit)", s)
	}
	n, anchor, err := pr.PruneAudit(ctx, start.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 10 || anchor.Seq != 10 {
		t.Fatalf("PruneAudit: got %d records, anchor %d; want 10 and 10", n, anchor.Seq)
	}
	check := func(when string, s store.Store, wantRecords uint64, wantHead uint64) {
		t.Helper()
		res, err := s.VerifyAudit(ctx)
		if err != nil {
			t.Fatalf("%s: VerifyAudit: %v", when, err)
		}
		if !res.OK || res.Pruned != 10 || res.Records != wantRecords || res.Head.Seq != wantHead {
			t.Errorf("%s: got %+v, want OK, pruned 10, %d records, head %d", when, res, wantRecords, wantHead)
		}
	}
	check("after pruning", s, 20, 30)
	recs, err := s.AuditLog(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 20 || recs[0].Seq != 11 || !bytes.Equal(recs[0].Prev, anchor.Hash) {
		t.Errorf("AuditLog after pruning: got %d records from %d, want 20 from 11 chained to the anchor", len(recs), recs[0].Seq)
	}
	if n, _, err := pr.PruneAudit(ctx, start.Add(10*time.Minute)); err != nil || n != 0 {
		t.Errorf("second PruneAudit: got %d, %v; want 0, nil", n, err)
	}
	closeIt(t, s)
	s = h.Open(t, loc)
	check("after reopening", s, 20, 30)
	s.Audit(store.AuditRecord{Action: "login", User: "alice", Outcome: "allow"})
	check("after appending", s, 21, 31)

	to := h.open(t)
	if _, err := store.Copy(ctx, s, to); err != nil {
		t.Fatalf("Copy of a pruned log: %v", err)
	}
	check("copy", to, 21, 31)
}

// testAuditSeq: AuditQuery.Seq selects one record; VerifyResult.Head names
// the last one.
func testAuditSeq(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.open(t)
	if res, err := s.VerifyAudit(ctx); err != nil || !res.OK || res.Head.Seq != 0 {
		t.Errorf("empty log: got %+v, %v; want OK with head 0", res, err)
	}
	FillAudit(t, s, 5, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	got, err := s.AuditLog(ctx, store.AuditQuery{Seq: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Seq != 3 {
		t.Fatalf("Seq 3: got %+v, want record 3", got)
	}
	if got, err := s.AuditLog(ctx, store.AuditQuery{Seq: 9}); err != nil || len(got) != 0 {
		t.Errorf("Seq 9: got %d records, %v; want none", len(got), err)
	}
	last, err := s.AuditLog(ctx, store.AuditQuery{Seq: 5})
	if err != nil || len(last) != 1 {
		t.Fatalf("Seq 5: got %v, %v", last, err)
	}
	res, err := s.VerifyAudit(ctx)
	if err != nil || !res.OK || res.Head.Seq != 5 || !bytes.Equal(res.Head.Hash, last[0].Hash) {
		t.Errorf("VerifyAudit: got %+v, %v; want OK with head 5 %x", res, err, last[0].Hash)
	}
}
