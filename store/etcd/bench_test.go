package etcd_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
	"github.com/legate-proxy/legate/store/etcd"
)

// BenchmarkBackends compares the login path (Verify) of bolt.Store and of
// etcd.Store's replica on the same 10,000 users × 5 app passwords, then measures etcd
// creates and revocation propagation, all on a three-member cluster on
// loopback:
//
//	go test -run '^$' -bench BenchmarkBackends -benchtime 2s ./store/etcd/
func BenchmarkBackends(b *testing.B) {
	ctx := context.Background()
	e := testenv.StartEtcd(b, 3)
	dir := b.TempDir()
	key := filepath.Join(dir, "hmac.key")
	bs, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(dir, "legate.db"), KeyFile: key, FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	closeOnCleanup(b, bs)
	creds, err := bulkLoad(ctx, bs, key, 10_000, 5)
	if err != nil {
		b.Fatal(err)
	}
	es := openEtcd(b, e, key, "/bench/")
	start := time.Now()
	if _, err := store.Copy(ctx, bs, es); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d app passwords into etcd in %v", len(creds), time.Since(start))
	for _, s := range []struct {
		name string
		s    store.Store
	}{{"verify/bolt", bs}, {"verify/etcd", es}} {
		b.Run(s.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				c := creds[i%len(creds)]
				i += 7919
				if _, err := s.s.Verify(ctx, c.User, c.Secret); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("create/etcd", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, _, err := es.Create(ctx, store.CreateRequest{User: fmt.Sprintf("new%d", i/40), Name: fmt.Sprint(i)}); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
	})
	b.Run("revocation-propagation/etcd", func(b *testing.B) {
		other := openEtcd(b, e, key, "/bench/", func(o *etcd.Options) { o.Endpoints = e.Endpoints()[2:] })
		revs := watchRevocations(other)
		const n = 100
		for b.Loop() {
			var lat []time.Duration
			for i := range n {
				p, _, err := es.Create(ctx, store.CreateRequest{User: "revokee", Name: fmt.Sprint(i)})
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if _, err := es.Revoke(ctx, "revokee", store.Selector{ID: p.ID}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, revs.waitFor(b, p.ID, time.Second).Sub(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
		}
	})
}

type cred struct{ User, Secret string }

// bulkLoad imports users × perUser app passwords made here (hashed under the
// key file), bypassing Create's write per password.
func bulkLoad(ctx context.Context, im store.Importer, keyFile string, users, perUser int) ([]cred, error) {
	key, err := store.LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	sec := store.NewSecrets(key)
	now := time.Now().UTC()
	var ps []store.AppPassword
	var creds []cred
	for u := range users {
		user := fmt.Sprintf("user%05d", u)
		for i := range perUser {
			secret := store.Generate()
			ps = append(ps, store.AppPassword{ID: store.NewID(), User: user, Name: fmt.Sprintf("device %d", i),
				Created: now, HashAlg: store.HashHMACSHA256, Hash: sec.Hash(secret)})
			creds = append(creds, cred{user, secret})
		}
	}
	_, err = im.ImportPasswords(ctx, ps)
	return creds, err
}
