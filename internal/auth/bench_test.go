package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/throttle"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
	"golang.org/x/crypto/bcrypt"
)

// Benchmarks of the login path: BenchmarkLogin runs the whole login service
// (throttle check, directory lookup, store.Verify, policy.Decide, audit and
// last use, batched) against a bbolt store of 10,000 users × 5 app passwords
// and a static directory of 10,000 users.
//
// Creating 50,000 app passwords through Store.Create costs one fsync each
// (≈9 ms here on disk, ≈7 min in all), so the fixture is built once on tmpfs
// (/dev/shm, where fsync is nearly free: ≈0.25 ms a Create) and cached under
// os.TempDir()/legate-bench-<benchFixtureVersion>. Each run copies it into
// b.TempDir() on disk. Bump benchFixtureVersion when the store format changes;
// a cached fixture whose first secret no longer verifies is rebuilt anyway.

const (
	benchUsers          = 10_000
	benchPerUser        = 5
	benchFixtureVersion = "v1"
)

type benchCred struct {
	User   string `json:"user"`
	Secret string `json:"secret"`
}

// benchFixture returns a store opened on a fresh copy of the cached fixture,
// and the users' secrets.
func benchFixture(b *testing.B) (*bolt.Store, []benchCred) {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("legate-bench-%s-%dx%d", benchFixtureVersion, benchUsers, benchPerUser))
	creds, err := loadCreds(dir)
	if err == nil {
		st, err := openCopy(b, dir)
		if err == nil {
			if _, verr := st.Verify(context.Background(), creds[0].User, creds[0].Secret); verr == nil {
				return st, creds
			}
			st.Close()
		}
		b.Logf("cached fixture in %s unusable, rebuilding", dir)
	}
	if err := buildFixture(b, dir); err != nil {
		b.Fatalf("build fixture: %v", err)
	}
	if creds, err = loadCreds(dir); err != nil {
		b.Fatal(err)
	}
	st, err := openCopy(b, dir)
	if err != nil {
		b.Fatal(err)
	}
	return st, creds
}

func loadCreds(dir string) ([]benchCred, error) {
	data, err := os.ReadFile(filepath.Join(dir, "creds.json"))
	if err != nil {
		return nil, err
	}
	var creds []benchCred
	if err := json.Unmarshal(data, &creds); err != nil {
		return nil, err
	}
	if len(creds) != benchUsers*benchPerUser {
		return nil, fmt.Errorf("fixture has %d creds, want %d", len(creds), benchUsers*benchPerUser)
	}
	return creds, nil
}

// buildFixture creates the app passwords through Store.Create on tmpfs when
// available and moves the result to dir.
func buildFixture(b *testing.B, dir string) error {
	work := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		work = "/dev/shm"
	}
	tmp, err := os.MkdirTemp(work, "legate-bench-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	ctx := context.Background()
	st, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(tmp, "legate.db")})
	if err != nil {
		return err
	}
	creds := make([]benchCred, 0, benchUsers*benchPerUser)
	for u := range benchUsers {
		user := benchUser(u)
		for i := range benchPerUser {
			_, secret, err := st.Create(ctx, store.CreateRequest{User: user, Name: fmt.Sprintf("device %d", i)})
			if err != nil {
				st.Close()
				return err
			}
			creds = append(creds, benchCred{User: user, Secret: secret})
		}
	}
	if err := st.Close(); err != nil {
		return err
	}
	b.Logf("built %d app passwords in %s in %v", len(creds), work, time.Since(start))
	data, err := json.Marshal(creds)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "creds.json"), data, 0o600); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"legate.db", "hmac.key", "creds.json"} {
		if err := copyFile(filepath.Join(tmp, f), filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	return nil
}

func openCopy(b *testing.B, dir string) (*bolt.Store, error) {
	dst := b.TempDir()
	for _, f := range []string{"legate.db", "hmac.key"} {
		if err := copyFile(filepath.Join(dir, f), filepath.Join(dst, f)); err != nil {
			return nil, err
		}
	}
	st, err := bolt.Open(context.Background(), bolt.Options{Path: filepath.Join(dst, "legate.db")})
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() { st.Close() })
	return st, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func benchUser(i int) string { return fmt.Sprintf("user%05d", i) }

func benchDirectory(b *testing.B) *directory.Static {
	users := make([]directory.StaticUser, benchUsers)
	for i := range users {
		name := benchUser(i)
		users[i] = directory.StaticUser{Name: name, Addresses: []string{name + "@example.com"}, Groups: []string{"staff"}}
	}
	d, err := directory.NewStatic(users)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// benchIP spreads clients over 198.18.0.0/15 (RFC 2544 benchmarking range;
// only used as a value, nothing is sent), so the throttle never blocks.
func benchIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
}

func BenchmarkLogin(b *testing.B) {
	st, creds := benchFixture(b)
	dir := benchDirectory(b)
	// A fresh service (and throttle) per sub-benchmark: with -count the
	// sub-benchmarks repeat inside one BenchmarkLogin.
	newService := func() *Service {
		return New(Options{
			Store:     st,
			Directory: dir,
			Policy:    testPolicy(),
			// Delays off: they are deliberate waits, not cost.
			Throttle: throttle.New(throttle.Options{BaseDelay: -1}),
			Logger:   discard(),
		})
	}
	ctx := context.Background()
	attempt := func(i int, secret func(benchCred) string, user func(benchCred) string) login.Request {
		c := creds[i%len(creds)]
		return login.Request{User: user(c), Secret: secret(c), IP: benchIP(i), Protocol: policy.IMAP, TLS: true}
	}
	right := func(c benchCred) string { return c.Secret }
	wrong := func(benchCred) string { return "AAAA-BBBB-CCCC-DDDD" }
	name := func(c benchCred) string { return c.User }
	cases := []struct {
		name   string
		secret func(benchCred) string
		user   func(benchCred) string
		want   policy.Outcome
	}{
		{"allow", right, name, policy.Allow},
		{"by-address", right, func(c benchCred) string { return c.User + "@example.com" }, policy.Allow},
		{"wrong-secret", wrong, name, policy.BadCredentials},
		{"unknown-user", wrong, func(c benchCred) string { return "x" + c.User }, policy.BadCredentials},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			svc := newService()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if res := svc.Login(ctx, attempt(i, tc.secret, tc.user)); res.Outcome != tc.want {
					b.Fatalf("login %d: got %s, want %s", i, res.Outcome, tc.want)
				}
				i++
			}
		})
	}
	b.Run("allow-parallel", func(b *testing.B) {
		svc := newService()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(time.Now().UnixNano() % int64(len(creds)))
			for pb.Next() {
				if res := svc.Login(ctx, attempt(i, right, name)); res.Outcome != policy.Allow {
					b.Errorf("got %s, want allow", res.Outcome)
					return
				}
				i += 7
			}
		})
	})
	b.Run("explain", func(b *testing.B) {
		svc := newService()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if res := svc.Explain(ctx, attempt(i, right, name)); res.Outcome != policy.Allow {
				b.Fatalf("got %s, want allow", res.Outcome)
			}
			i++
		}
	})
	// verify+decide: the decision path alone (directory lookup, one HMAC
	// and index lookup, policy without trace), without the side effects
	// Login adds (audit record, last use, log line).
	b.Run("verify+decide", func(b *testing.B) {
		svc := newService()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if res := svc.evaluate(ctx, attempt(i, right, name), false).res; res.Outcome != policy.Allow {
				b.Fatalf("got %s, want allow", res.Outcome)
			}
			i++
		}
	})
	b.Run("store-verify", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c := creds[i%len(creds)]
			if _, err := st.Verify(ctx, c.User, c.Secret); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkDecide is policy.Decide alone, as the login service calls it.
func BenchmarkDecide(b *testing.B) {
	pol := testPolicy()
	in := policy.Input{
		Request:    policy.Request{User: "alice", IP: addr("198.51.100.7"), Protocol: policy.IMAP, TLS: true},
		User:       &policy.User{Name: "alice", Groups: []string{"staff"}},
		Credential: &policy.Credential{Kind: policy.AppPassword, ID: "abcd2345", Name: "Laptop", Created: t0},
		Now:        t0.Add(time.Hour),
		NoTrace:    true, // as Login calls it; Explain builds the trace
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := policy.Decide(pol, in); d.Outcome != policy.Allow {
			b.Fatalf("got %s, want allow", d.Outcome)
		}
	}
}

// BenchmarkBcrypt10 is one bcrypt check at cost 10, for comparison: what a
// login would cost if app passwords were stored under a slow KDF.
func BenchmarkBcrypt10(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("abcd-efgh-jkmn-pqrs"), 10)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := bcrypt.CompareHashAndPassword(h, []byte("abcd-efgh-jkmn-pqrs")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkArgon2idPrimary is one check of a static primary password hashed
// with directory.HashArgon2id (64 MiB, t=3, p=2), for comparison.
func BenchmarkArgon2idPrimary(b *testing.B) {
	h := directory.HashArgon2id("correct horse")
	for b.Loop() {
		if !directory.VerifyHash(h, "correct horse") {
			b.Fatal("argon2id: got mismatch, want match")
		}
	}
}
