package auth

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/throttle"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

// TestTLSRequired: on a plaintext connection the secret is not checked and
// the directory not asked.
func TestTLSRequired(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	r := req("alice", secret)
	r.TLS = false
	res := e.svc.Login(context.Background(), r)
	if res.Outcome != policy.TLSRequired {
		t.Fatalf("got %s, want tls_required", res.Outcome)
	}
	if n := e.store.verifies.Load(); n != 0 {
		t.Errorf("store.Verify calls: got %d, want 0", n)
	}
	if n := e.dir.lookups.Load(); n != 0 {
		t.Errorf("directory lookups: got %d, want 0", n)
	}
	if e.svc.CredentialsAccepted(false, r.IP) {
		t.Errorf("CredentialsAccepted(plaintext): got true, want false")
	}
	if _, f, _ := e.throttle.calls(); f != 0 {
		t.Errorf("throttle failures: got %d, want 0 (TLS refusal is not a failed guess)", f)
	}
	// Loopback exemption.
	p := testPolicy()
	p.AllowPlaintextLoopback = true
	e.svc.SetPolicy(p)
	r.IP = addr("127.0.0.1")
	if res := e.svc.Login(context.Background(), r); res.Outcome != policy.Allow {
		t.Errorf("plaintext from loopback with allow_plaintext_loopback: got %s, want allow", res.Outcome)
	}
}

// TestThrottled: a blocked client's secret is not checked and the directory
// is not asked, even when the secret is right.
func TestThrottled(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	e.throttle.blocked = true
	res := e.svc.Login(context.Background(), req("Alice", secret))
	if res.Outcome != policy.Throttled || res.Rule != policy.RuleThrottled {
		t.Fatalf("got %s/%s, want throttled", res.Outcome, res.Rule)
	}
	if n := e.store.verifies.Load(); n != 0 {
		t.Errorf("store.Verify calls: got %d, want 0", n)
	}
	if n := e.dir.lookups.Load(); n != 0 {
		t.Errorf("directory lookups: got %d, want 0", n)
	}
	e.throttle.mu.Lock()
	checks := e.throttle.checks
	e.throttle.mu.Unlock()
	if len(checks) != 1 || checks[0] != "198.51.100.7 alice" {
		t.Errorf("throttle checks: got %q, want [\"198.51.100.7 alice\"] (normalised name)", checks)
	}
	if recs := e.auditLog(t); len(recs) != 1 || recs[0].Rule != string(policy.RuleThrottled) {
		t.Errorf("audit: got %+v, want one throttled record", recs)
	}
}

func TestThrottleDelay(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	e.throttle.delay = 400 * time.Millisecond
	tests := []struct {
		name      string
		secret    string
		ctxCancel bool
		minWait   time.Duration
		maxWait   time.Duration
	}{
		{"failure waits", "wrong", false, 400 * time.Millisecond, 10 * time.Second},
		{"success does not wait", secret, false, 0, 350 * time.Millisecond},
		{"cancelled context cuts the wait", "wrong", true, 0, 350 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.ctxCancel {
				cancel()
			}
			start := time.Now()
			e.svc.Login(ctx, req("alice", tt.secret))
			took := time.Since(start)
			if took < tt.minWait || took > tt.maxWait {
				t.Errorf("Login took %v, want between %v and %v", took, tt.minWait, tt.maxWait)
			}
		})
	}
}

// TestRealThrottle wires the throttle package in: hammering alice from one
// network blocks her there, not from her own network.
func TestRealThrottle(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	th := throttle.New(throttle.Options{Limits: throttle.Limits{MaxFailuresPerUser: 3}, BaseDelay: -1, Now: e.clock.Now})
	e.svc = New(Options{Store: e.store, Directory: e.dir, Policy: testPolicy(), Throttle: th, Logger: discard(), Now: e.clock.Now})
	ctx := context.Background()
	attacker := req("alice", "guess")
	attacker.IP = addr("203.0.113.9")
	for i := range 3 {
		if res := e.svc.Login(ctx, attacker); res.Outcome != policy.BadCredentials {
			t.Fatalf("attempt %d: got %s, want bad_credentials", i+1, res.Outcome)
		}
	}
	attacker.Secret = secret // even the right secret
	if res := e.svc.Login(ctx, attacker); res.Outcome != policy.Throttled {
		t.Fatalf("after 3 failures from 203.0.113.0/24: got %s, want throttled", res.Outcome)
	}
	if res := e.svc.Login(ctx, req("alice", secret)); res.Outcome != policy.Allow {
		t.Fatalf("alice from 198.51.100.7: got %s, want allow", res.Outcome)
	}
	e.clock.Advance(throttle.DefaultWindow)
	if res := e.svc.Login(ctx, attacker); res.Outcome != policy.Allow {
		t.Fatalf("after the window: got %s, want allow", res.Outcome)
	}
}

// TestThrottleKeysConsistent: Check, Failure and Success must see the same
// user key, or a success never clears the failures it should. The key is
// the canonical name once the directory knows the login (issue #13.5).
func TestThrottleKeysConsistent(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	e.svc.Login(context.Background(), req("Alice@Example.com", "bad"))
	e.svc.Login(context.Background(), req("Alice@Example.com", secret))
	e.throttle.mu.Lock()
	defer e.throttle.mu.Unlock()
	want := "198.51.100.7 alice"
	if len(e.throttle.failures) != 1 || e.throttle.failures[0] != want {
		t.Errorf("failures: got %q, want [%q]", e.throttle.failures, want)
	}
	if len(e.throttle.successes) != 1 || e.throttle.successes[0] != want {
		t.Errorf("successes: got %q, want [%q] (the key Check and Failure used)", e.throttle.successes, want)
	}
	if !slices.Contains(e.throttle.checks, want) {
		t.Errorf("checks: got %q, want one under %q", e.throttle.checks, want)
	}
}

// TestThrottleCanonicalName: spelling a name differently (case, an
// address) does not buy a fresh per-user budget, and the audit names the
// canonical user (issue #13.5).
func TestThrottleCanonicalName(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	th := throttle.New(throttle.Options{Limits: throttle.Limits{MaxFailuresPerUser: 3}, BaseDelay: -1, Now: e.clock.Now})
	e.svc = New(Options{Store: e.store, Directory: e.dir, Policy: testPolicy(), Throttle: th, Logger: discard(), Now: e.clock.Now})
	ctx := context.Background()
	for i, login := range []string{"alice", "ALICE", "alice@example.com"} {
		r := req(login, "guess")
		r.IP = addr("203.0.113.9")
		if res := e.svc.Login(ctx, r); res.Outcome != policy.BadCredentials {
			t.Fatalf("attempt %d (%s): got %s, want bad_credentials", i+1, login, res.Outcome)
		}
	}
	for _, login := range []string{"Alice@Example.COM", "alice"} {
		r := req(login, secret)
		r.IP = addr("203.0.113.10")
		if res := e.svc.Login(ctx, r); res.Outcome != policy.Throttled {
			t.Errorf("%s after 3 failures under other spellings: got %s, want throttled", login, res.Outcome)
		}
	}
	if err := e.bolt.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.auditLog(t) {
		if r.User != "alice" {
			t.Errorf("audit record %s/%s names %q, want the canonical alice", r.Outcome, r.Rule, r.User)
		}
	}
}
