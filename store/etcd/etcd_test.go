package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
	"github.com/legate-proxy/legate/store/etcd"
	"github.com/legate-proxy/legate/store/storetest"
)

// revocations collects OnRevoke calls with their arrival time.
type revocations struct {
	mu  sync.Mutex
	got map[string]time.Time
	ch  chan string
}

func watchRevocations(s store.RevocationNotifier) *revocations {
	r := &revocations{got: make(map[string]time.Time), ch: make(chan string, 1000)}
	s.OnRevoke(func(ids []string, _ string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range ids {
			r.got[id] = time.Now()
			select {
			case r.ch <- id:
			default:
			}
		}
	})
	return r
}

// waitFor waits up to d for id to be reported and returns when it was.
func (r *revocations) waitFor(t testing.TB, id string, d time.Duration) time.Time {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		at, ok := r.got[id]
		r.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("revocation of %s not reported within %v", id, d)
		}
	}
}

// verifyWithin polls s.Verify until it returns wantErr (nil: success) or d
// passes, and returns how long it took.
func verifyWithin(t testing.TB, s store.Store, user, secret string, wantErr error, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := s.Verify(context.Background(), user, secret)
		if errors.Is(err, wantErr) || (wantErr == nil && err == nil) {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("Verify(%s): got %v after %v, want %v", user, err, d, wantErr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two instances on one three-member cluster, each talking to its own member.
func TestEtcdTwoInstances(t *testing.T) {
	e := testenv.StartEtcd(t, 3)
	key := filepath.Join(t.TempDir(), "hmac.key")
	eps := e.Endpoints()
	a := openEtcd(t, e, key, "/two/", func(o *etcd.Options) { o.Endpoints = eps[:1] })
	b := openEtcd(t, e, key, "/two/", func(o *etcd.Options) { o.Endpoints = eps[1:2] })
	revA := watchRevocations(a)
	ctx := context.Background()

	t.Run("created on A verifies on B", func(t *testing.T) {
		p, secret, err := a.Create(ctx, store.CreateRequest{User: "alice", Name: "Laptop"})
		if err != nil {
			t.Fatal(err)
		}
		took := verifyWithin(t, b, "alice", secret, nil, time.Second)
		t.Logf("visible on B after %v", took)
		got, _ := b.Verify(ctx, "alice", secret)
		if got.ID != p.ID {
			t.Errorf("B: got id %s, want %s", got.ID, p.ID)
		}
	})
	t.Run("revoked on B fires A's OnRevoke within 1s", func(t *testing.T) {
		p, secret, err := a.Create(ctx, store.CreateRequest{User: "bob", Name: "Phone"})
		if err != nil {
			t.Fatal(err)
		}
		verifyWithin(t, b, "bob", secret, nil, time.Second)
		start := time.Now()
		if _, err := b.Revoke(ctx, "bob", store.Selector{ID: p.ID}); err != nil {
			t.Fatal(err)
		}
		at := revA.waitFor(t, p.ID, time.Second)
		t.Logf("A told after %v", at.Sub(start))
		if _, err := a.Verify(ctx, "bob", secret); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("A after the revocation: got %v, want ErrNotFound", err)
		}
	})
	t.Run("2x40 concurrent creates end with 40", func(t *testing.T) {
		ok, limited := storetest.CreateConcurrently(t, []store.Store{a, b}, "carol", 16, 5)
		if ok != store.DefaultLimit || limited != 80-store.DefaultLimit {
			t.Errorf("got %d created and %d refused, want 40 and 40", ok, limited)
		}
		for _, s := range []store.Store{a, b} {
			if list, err := s.List(ctx, "carol"); err != nil || len(list) != store.DefaultLimit {
				t.Errorf("List: got %d, %v; want 40", len(list), err)
			}
		}
		if err := a.CheckIndex(ctx); err != nil {
			t.Error(err)
		}
	})
	t.Run("one audit chain", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, s := range []store.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 300 {
					s.Audit(store.AuditRecord{Action: "login", User: "dave", Outcome: "allow", Detail: fmt.Sprint(i)})
					if i%50 == 0 {
						if err := s.Flush(ctx); err != nil {
							t.Error(err)
						}
					}
				}
				if err := s.Flush(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		res, err := b.VerifyAudit(ctx)
		if err != nil || !res.OK || res.Records != 600 {
			t.Errorf("VerifyAudit: got %+v, %v; want OK with 600", res, err)
		}
	})
}

// Logins (Verify, RecordUse, Audit) cost no etcd write until the flush.
func TestEtcdVerifyNoWrites(t *testing.T) {
	e := testenv.StartEtcd(t, 1)
	s := openEtcd(t, e, filepath.Join(t.TempDir(), "hmac.key"), "/nw/")
	ctx := context.Background()
	p, secret, err := s.Create(ctx, store.CreateRequest{User: "alice", Name: "Laptop"})
	if err != nil {
		t.Fatal(err)
	}
	rev := func() int64 {
		r, err := s.Client().Get(ctx, "/nw/none")
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	before := rev()
	for i := range 1000 {
		got, err := s.Verify(ctx, "alice", secret)
		if err != nil || got.ID != p.ID {
			t.Fatalf("Verify %d: got %q, %v", i, got.ID, err)
		}
		s.RecordUse(got.ID, store.LastUse{Time: time.Unix(int64(1e9+i), 0), Protocol: "imap"})
		s.Audit(store.AuditRecord{Action: "login", User: "alice", Outcome: "allow", AppPasswordID: got.ID})
	}
	if got := rev() - before; got != 0 {
		t.Errorf("1000 logins: got %d etcd revisions, want 0", got)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// One txn for the last use, ceil(1000/99) for the audit records.
	if got, want := rev()-before, int64(1+11); got != want {
		t.Errorf("Flush: got %d etcd revisions, want %d", got, want)
	}
}

// Kill -9 one member of three: logins and creates keep working. Kill a
// second: Verify answers ErrUnavailable once the stale grace has passed, and
// works again when they return. Nothing acknowledged is lost.
func TestEtcdMemberLoss(t *testing.T) {
	const grace = 1500 * time.Millisecond
	e := testenv.StartEtcd(t, 3)
	key := filepath.Join(t.TempDir(), "hmac.key")
	s := openEtcd(t, e, key, "/loss/", func(o *etcd.Options) {
		o.StaleGrace = grace
		o.ProbeInterval = 100 * time.Millisecond
		o.DialTimeout = time.Second
	})
	ctx := context.Background()
	var acked []storetest.Cred
	create := func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		p, secret, err := s.Create(cctx, store.CreateRequest{User: fmt.Sprintf("u%d", i%7), Name: fmt.Sprintf("d%d", i)})
		if err == nil {
			acked = append(acked, storetest.Cred{User: p.User, Secret: secret, ID: p.ID})
		}
		return err
	}
	for i := range 20 {
		if err := create(i); err != nil {
			t.Fatal(err)
		}
	}
	e.Kill(0)
	killed := time.Now()
	for i := 20; time.Since(killed) < 2*grace; i++ {
		if err := create(i); err != nil {
			t.Fatalf("Create with one member down: %v", err)
		}
		c := acked[i%len(acked)]
		if _, err := s.Verify(ctx, c.User, c.Secret); err != nil {
			t.Fatalf("Verify with one member down (%v after the kill): %v", time.Since(killed), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("one member down: %d acknowledged creates so far, logins fine for %v", len(acked), time.Since(killed))

	c := acked[0]
	e.Kill(1)
	killed = time.Now()
	took := verifyWithin(t, s, c.User, c.Secret, etcd.ErrUnavailable, grace+5*time.Second)
	t.Logf("quorum lost: Verify unavailable after %v (stale grace %v)", took, grace)
	if took < grace/2 {
		t.Errorf("unavailable after %v, want about the stale grace %v", took, grace)
	}
	if _, err := s.Verify(ctx, c.User, "AAAA-BBBB-CCCC-DDDD"); !errors.Is(err, etcd.ErrUnavailable) {
		t.Errorf("wrong secret without quorum: got %v, want ErrUnavailable (not ErrNotFound)", err)
	}

	e.Restart(0)
	e.Restart(1)
	took = verifyWithin(t, s, c.User, c.Secret, nil, 20*time.Second)
	t.Logf("members back: Verify works again after %v", took)
	for _, c := range acked {
		if p, err := s.Verify(ctx, c.User, c.Secret); err != nil || p.ID != c.ID {
			t.Errorf("acknowledged %s lost: got %q, %v", c.ID, p.ID, err)
		}
	}
	users, err := s.Users(ctx)
	if err != nil || len(users) != 7 {
		t.Errorf("Users: got %v, %v; want 7", users, err)
	}
	if err := s.CheckIndex(ctx); err != nil {
		t.Error(err)
	}
	// A fresh instance sees the same.
	s2 := openEtcd(t, e, key, "/loss/")
	for _, c := range acked {
		if _, err := s2.Verify(ctx, c.User, c.Secret); err != nil {
			t.Errorf("fresh instance: %s: %v", c.ID, err)
		}
	}
	if got := s2.ReplicaLen(); got != len(acked) {
		t.Errorf("fresh replica: got %d, want %d", got, len(acked))
	}
}

// store copy round trip: bolt → etcd → bolt keeps every record.
func TestCopyBoltEtcdBolt(t *testing.T) {
	ctx := context.Background()
	e := testenv.StartEtcd(t, 1)
	key := filepath.Join(t.TempDir(), "hmac.key")
	openB := func(dir string) *bolt.Store {
		b, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(dir, "legate.db"), KeyFile: key, FlushInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		closeOnCleanup(t, b)
		return b
	}
	src := openB(t.TempDir())
	creds := storetest.Seed(t, src, 5, 3, 250)
	mid := openEtcd(t, e, key, "/copy/")
	dst := openB(t.TempDir())
	for _, step := range []struct {
		name     string
		from, to store.Store
	}{{"bolt to etcd", src, mid}, {"etcd to bolt", mid, dst}, {"again (idempotent)", mid, dst}} {
		st, err := store.Copy(ctx, step.from, step.to)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		t.Logf("%s: %+v", step.name, st)
		if st.Passwords != 15 || st.Audit != 250 {
			t.Errorf("%s: got %+v, want 15 passwords and 250 audit records", step.name, st)
		}
		storetest.CheckCopy(t, step.to, creds, 250)
	}
	a, _ := src.ExportPasswords(ctx)
	b, _ := dst.ExportPasswords(ctx)
	if !slices.EqualFunc(a, b, func(x, y store.AppPassword) bool { return fmt.Sprint(x) == fmt.Sprint(y) }) {
		t.Errorf("round trip changed records:\n got %v\nwant %v", b, a)
	}
	ra, _ := src.ExportAudit(ctx)
	rb, _ := dst.ExportAudit(ctx)
	if fmt.Sprint(ra) != fmt.Sprint(rb) {
		t.Errorf("round trip changed the audit chain")
	}
}
