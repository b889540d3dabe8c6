package bolt

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/legate-proxy/legate/store"
)

// fillAudit writes n login records for users u0..u2 at one-minute steps.
func fillAudit(t *testing.T, b *Store, n int, start time.Time) {
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

// tamper opens the closed database with bbolt directly and applies fn.
func tamper(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyAudit(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		edit        func(tx *bolt.Tx) error
		wantBroken  uint64
		wantProblem string
	}{
		{"edited bytes", func(tx *bolt.Tx) error {
			a := tx.Bucket(bucketAudit)
			v := bytes.Clone(a.Get(seqKey(7)))
			v = bytes.Replace(v, []byte(`"outcome":"allow"`), []byte(`"outcome":"deny!"`), 1)
			return a.Put(seqKey(7), v)
		}, 7, "modified"},
		{"garbage", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAudit).Put(seqKey(4), []byte("{not json"))
		}, 4, "does not decode"},
		{"deleted middle", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAudit).Delete(seqKey(5))
		}, 5, "missing"},
		{"deleted tail", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAudit).Delete(seqKey(10))
		}, 10, "removed from the end"},
		{"rehashed edit", func(tx *bolt.Tx) error {
			// Recompute the edited record's own hash: the next link breaks.
			a := tx.Bucket(bucketAudit)
			var r store.AuditRecord
			if err := jsonUnmarshal(a.Get(seqKey(3)), &r); err != nil {
				return err
			}
			r.Outcome = "deny"
			h, _ := store.AuditHash(r)
			r.Hash = h
			v, _ := jsonMarshal(r)
			return a.Put(seqKey(3), v)
		}, 4, "prev hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := openTest(t, dir)
			fillAudit(t, b, 10, start)
			res, err := b.VerifyAudit(ctx)
			if err != nil || !res.OK || res.Records != 10 {
				t.Fatalf("before tampering: got %+v, %v; want OK with 10 records", res, err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			tamper(t, filepath.Join(dir, "legate.db"), tc.edit)
			b = openTest(t, dir)
			res, err = b.VerifyAudit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.BrokenAt != tc.wantBroken || !strings.Contains(res.Problem, tc.wantProblem) {
				t.Errorf("got %+v, want broken at %d with %q", res, tc.wantBroken, tc.wantProblem)
			}
		})
	}
}

// The anchor left by pruning is part of what VerifyAudit checks: a changed
// anchor, or the first kept record removed, breaks the chain.
func TestPruneAnchorTampered(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		fn   func(tx *bolt.Tx) error
		want string
	}{
		{"anchor changed", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(metaAuditAnchor, []byte(`{"seq":5,"hash":"AAAA"}`))
		}, "anchor"},
		{"first kept record removed", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAudit).Delete(seqKey(6))
		}, "record 6 is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := openTest(t, dir)
			fillAudit(t, b, 10, start)
			if n, _, err := b.PruneAudit(ctx, start.Add(5*time.Minute)); err != nil || n != 5 {
				t.Fatalf("PruneAudit: got %d, %v; want 5", n, err)
			}
			if res, err := b.VerifyAudit(ctx); err != nil || !res.OK || res.Pruned != 5 {
				t.Fatalf("before tampering: got %+v, %v; want OK with 5 pruned", res, err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			tamper(t, filepath.Join(dir, "legate.db"), tc.fn)
			b = openTest(t, dir)
			res, err := b.VerifyAudit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || !strings.Contains(res.Problem, tc.want) {
				t.Errorf("got %+v, want broken naming %q", res, tc.want)
			}
		})
	}
}
