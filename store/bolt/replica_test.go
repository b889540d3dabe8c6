package bolt

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/legate-proxy/legate/store"
)

// Reopening rebuilds the replica from the database, including flushed last
// uses and without revoked passwords.
func TestReplicaRebuiltOnReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openTest(t, dir)
	type cred struct {
		p      store.AppPassword
		secret string
	}
	var creds []cred
	for i := range 6 {
		p, s := mustCreate(t, b, fmt.Sprintf("user%d", i%2), fmt.Sprintf("dev%d", i))
		creds = append(creds, cred{p, s})
	}
	if _, err := b.Revoke(ctx, "user0", store.Selector{ID: creds[0].p.ID}); err != nil {
		t.Fatal(err)
	}
	use := store.LastUse{Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), Protocol: "smtp", IP: netip.MustParseAddr("192.0.2.7")}
	b.RecordUse(creds[1].p.ID, use)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openTest(t, dir)
	if got, want := b.ReplicaLen(), 5; got != want {
		t.Errorf("replica after reopen: got %d records, want %d", got, want)
	}
	for i, c := range creds {
		got, err := b.Verify(ctx, c.p.User, c.secret)
		switch {
		case i == 0 && !errors.Is(err, store.ErrNotFound):
			t.Errorf("revoked %s after reopen: got %v, want ErrNotFound", c.p.ID, err)
		case i > 0 && (err != nil || got.ID != c.p.ID):
			t.Errorf("%s after reopen: got %q, %v", c.p.ID, got.ID, err)
		}
		if i == 1 && got.LastUse != use {
			t.Errorf("last use after reopen: got %+v, want %+v", got.LastUse, use)
		}
	}
	if err := b.CheckReplica(); err != nil {
		t.Error(err)
	}
}

// A flushed last use reaches the replica, so Verify still reports it once
// it is no longer pending.
func TestFlushUpdatesReplica(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	p, secret := mustCreate(t, b, "alice", "Laptop")
	use := store.LastUse{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Protocol: "imap", Client: "mutt"}
	b.RecordUse(p.ID, use)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if pending, _, _ := b.batch.Pending(); pending != 0 {
		t.Fatalf("pending uses after Flush: got %d, want 0", pending)
	}
	got, err := b.Verify(ctx, "alice", secret)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUse != use {
		t.Errorf("Verify after Flush: got last use %+v, want %+v", got.LastUse, use)
	}
	// An older use flushed later does not go back in time.
	b.RecordUse(p.ID, store.LastUse{Time: use.Time.Add(-time.Hour), Protocol: "smtp"})
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Verify(ctx, "alice", secret); got.LastUse != use {
		t.Errorf("after flushing an older use: got %+v, want %+v", got.LastUse, use)
	}
}

// Records Verify could never match before the replica existed (hash missing
// from the index, unknown algorithm) are not loaded into it either.
func TestReplicaSkipsUnusableRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openTest(t, dir)
	noIndex, s1 := mustCreate(t, b, "alice", "NoIndex")
	otherAlg, s2 := mustCreate(t, b, "alice", "OtherAlg")
	good, s3 := mustCreate(t, b, "alice", "Good")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	tamper(t, filepath.Join(dir, "legate.db"), func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketIndex).Delete(noIndex.Hash); err != nil {
			return err
		}
		p := otherAlg
		p.HashAlg = "argon2id"
		v, err := store.MarshalRecord(p)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketPasswords).Put([]byte(p.ID), v)
	})
	b = openTest(t, dir)
	for _, tc := range []struct {
		name, secret string
		wantErr      error
	}{
		{"missing from index", s1, store.ErrNotFound},
		{"other algorithm", s2, store.ErrNotFound},
		{"good", s3, nil},
	} {
		got, err := b.Verify(ctx, "alice", tc.secret)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.wantErr)
		}
		if tc.wantErr == nil && got.ID != good.ID {
			t.Errorf("%s: got id %s, want %s", tc.name, got.ID, good.ID)
		}
	}
	if got := b.ReplicaLen(); got != 1 {
		t.Errorf("replica: got %d records, want 1", got)
	}
}

// Verify, Create, Revoke, RecordUse and Flush all at once (run with -race).
// Stable passwords must always verify; a revoked one must fail as soon as
// Revoke has returned; at the end the replica must match the database.
func TestReplicaConcurrent(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "", func(o *Options) { o.FlushInterval = 5 * time.Millisecond })
	type cred struct{ user, secret, id string }
	var stable []cred
	for i := range 4 {
		p, s := mustCreate(t, b, fmt.Sprintf("stable%d", i), "Laptop")
		stable = append(stable, cred{p.User, s, p.ID})
	}
	var (
		readers  sync.WaitGroup
		writers  sync.WaitGroup
		stop     = make(chan struct{})
		mu       sync.Mutex
		problems []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for r := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := stable[(i+r)%len(stable)]
				p, err := b.Verify(ctx, c.user, c.secret)
				if err != nil || p.ID != c.id {
					fail("reader %d: Verify(%s): got %q, %v", r, c.user, p.ID, err)
					return
				}
				b.RecordUse(p.ID, store.LastUse{Protocol: "imap"})
				p.Scope = append(p.Scope, "mine") // the copy is ours
			}
		}()
	}
	const nWriters, rounds = 2, 15
	for w := range nWriters {
		writers.Add(1)
		go func() {
			defer writers.Done()
			user := fmt.Sprintf("churn%d", w)
			for i := range rounds {
				p, s, err := b.Create(ctx, store.CreateRequest{User: user, Name: fmt.Sprintf("d%d", i)})
				if err != nil {
					fail("writer %d: Create: %v", w, err)
					return
				}
				if got, err := b.Verify(ctx, user, s); err != nil || got.ID != p.ID {
					fail("writer %d: Verify after Create: got %q, %v", w, got.ID, err)
				}
				sel := store.Selector{ID: p.ID}
				if i%3 == 0 {
					sel = store.Selector{All: true}
				}
				if _, err := b.Revoke(ctx, user, sel); err != nil {
					fail("writer %d: Revoke: %v", w, err)
					return
				}
				if _, err := b.Verify(ctx, user, s); !errors.Is(err, store.ErrNotFound) {
					fail("writer %d: Verify after Revoke: got %v, want ErrNotFound", w, err)
				}
				if i%4 == 0 {
					if err := b.Flush(ctx); err != nil {
						fail("writer %d: Flush: %v", w, err)
					}
				}
			}
		}()
	}
	// Revoke {All} racing Creates of the same user: whatever interleaving,
	// nothing revoked may stay in the replica.
	writers.Add(2)
	var raced []cred
	var racedMu sync.Mutex
	go func() {
		defer writers.Done()
		for i := range rounds {
			p, s, err := b.Create(ctx, store.CreateRequest{User: "raced", Name: fmt.Sprintf("r%d", i)})
			if err != nil {
				fail("raced Create: %v", err)
				return
			}
			racedMu.Lock()
			raced = append(raced, cred{p.User, s, p.ID})
			racedMu.Unlock()
		}
	}()
	go func() {
		defer writers.Done()
		for range rounds {
			if _, err := b.Revoke(ctx, "raced", store.Selector{All: true}); err != nil {
				fail("raced Revoke: %v", err)
			}
		}
	}()
	writers.Wait()
	close(stop)
	readers.Wait()
	if len(problems) > 0 {
		t.Fatalf("%d problems, first: %s", len(problems), problems[0])
	}
	if _, err := b.Revoke(ctx, "raced", store.Selector{All: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range raced {
		if _, err := b.Verify(ctx, c.user, c.secret); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("revoked %s still verifies: %v", c.id, err)
		}
	}
	if err := b.CheckReplica(); err != nil {
		t.Error(err)
	}
	if err := b.CheckIndex(); err != nil {
		t.Error(err)
	}
}
