package auth

import (
	"context"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
	"golang.org/x/crypto/bcrypt"
)

// Test fixtures: a real bolt store, a static directory and a fixed clock.

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const primaryPW = "alice's primary password"

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// clock is a settable clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingStore counts Verify calls and can fail them.
type countingStore struct {
	store.Store
	verifies atomic.Int64
	err      error
}

func (s *countingStore) Verify(ctx context.Context, user, secret string) (store.AppPassword, error) {
	s.verifies.Add(1)
	if s.err != nil {
		return store.AppPassword{}, s.err
	}
	return s.Store.Verify(ctx, user, secret)
}

// countingDirectory counts calls and can fail them.
type countingDirectory struct {
	directory.Directory
	lookups, checks atomic.Int64
	lookupErr       error
	checkErr        error
}

func (d *countingDirectory) Lookup(ctx context.Context, login string) (*directory.User, error) {
	d.lookups.Add(1)
	if d.lookupErr != nil {
		return nil, d.lookupErr
	}
	return d.Directory.Lookup(ctx, login)
}

func (d *countingDirectory) CheckPassword(ctx context.Context, u *directory.User, pw string) error {
	d.checks.Add(1)
	if d.checkErr != nil {
		return d.checkErr
	}
	return d.Directory.CheckPassword(ctx, u, pw)
}

// fakeThrottler records calls and answers what it is told.
type fakeThrottler struct {
	mu        sync.Mutex
	blocked   bool
	delay     time.Duration
	checks    []string // "ip user"
	failures  []string
	successes []string
}

func (f *fakeThrottler) Check(ip netip.Addr, user string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks = append(f.checks, ip.String()+" "+user)
	return f.delay, f.blocked
}

func (f *fakeThrottler) Failure(ip netip.Addr, user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, ip.String()+" "+user)
}

func (f *fakeThrottler) Success(ip netip.Addr, user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.successes = append(f.successes, ip.String()+" "+user)
}

func (f *fakeThrottler) calls() (checks, failures, successes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.checks), len(f.failures), len(f.successes)
}

type env struct {
	svc      *Service
	store    *countingStore
	bolt     *bolt.Store
	dir      *countingDirectory
	throttle *fakeThrottler
	clock    *clock
	logs     *logintest.LogBuffer
}

// testUsers is the static directory of the tests. alice has a primary
// password (bcrypt, cost 4 to stay fast).
func testUsers(t testing.TB) []directory.StaticUser {
	h, err := bcrypt.GenerateFromPassword([]byte(primaryPW), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return []directory.StaticUser{
		{Name: "alice", Addresses: []string{"alice@example.com"}, Groups: []string{"staff"}, PasswordHash: string(h)},
		{Name: "bob", Addresses: []string{"bob@example.com"}, Admin: true},
		{Name: "carol", Disabled: true},
		{Name: "dave"},
	}
}

// testPolicy: TLS required, 10.0.0.0/8 and fd00::/8 trusted.
func testPolicy() *policy.Config {
	p := policy.Default()
	p.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	return &p
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: t0}
	b, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(t.TempDir(), "legate.db"), Now: clk.Now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	static, err := directory.NewStatic(testUsers(t))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		store:    &countingStore{Store: b},
		bolt:     b,
		dir:      &countingDirectory{Directory: static},
		throttle: &fakeThrottler{},
		clock:    clk,
		logs:     &logintest.LogBuffer{},
	}
	e.svc = New(Options{
		Store:     e.store,
		Directory: e.dir,
		Policy:    testPolicy(),
		Throttle:  e.throttle,
		Logger:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:       clk.Now,
	})
	return e
}

// create makes an app password and returns it with its secret.
func (e *env) create(t *testing.T, req store.CreateRequest) (store.AppPassword, string) {
	t.Helper()
	if req.Name == "" {
		req.Name = "Laptop"
	}
	ap, secret, err := e.bolt.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("Create(%+v): %v", req, err)
	}
	return ap, secret
}

// req is a TLS IMAP login from a public address.
func req(user, secret string) login.Request {
	return login.Request{User: user, Secret: secret, IP: addr("198.51.100.7"), Protocol: policy.IMAP, TLS: true, Client: "Thunderbird"}
}

func (e *env) auditLog(t *testing.T) []store.AuditRecord {
	t.Helper()
	recs, err := e.bolt.AuditLog(context.Background(), store.AuditQuery{})
	if err != nil {
		t.Fatalf("AuditLog: %v", err)
	}
	var logins []store.AuditRecord
	for _, r := range recs {
		if r.Action == "login" {
			logins = append(logins, r)
		}
	}
	return logins
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
