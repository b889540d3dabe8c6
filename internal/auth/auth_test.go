package auth

import (
	"context"
	"errors"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/throttle"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name      string
		lookupErr error
		checkErr  error
		verifyErr error
		ip        string
		secret    string
	}{
		{name: "directory down", lookupErr: directory.ErrUnavailable, ip: "198.51.100.7"},
		{name: "directory error wrapped", lookupErr: fmt.Errorf("ldap: dial: %w", directory.ErrUnavailable), ip: "198.51.100.7"},
		{name: "password check down", checkErr: directory.ErrUnavailable, ip: "10.1.2.3", secret: primaryPW},
		{name: "store down", verifyErr: store.ErrClosed, ip: "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			_, secret := e.create(t, store.CreateRequest{User: "alice"})
			e.dir.lookupErr, e.dir.checkErr, e.store.err = tt.lookupErr, tt.checkErr, tt.verifyErr
			if tt.secret != "" {
				secret = tt.secret
			}
			r := req("alice", secret)
			r.IP = addr(tt.ip)
			res := e.svc.Login(context.Background(), r)
			if res.Outcome != policy.Unavailable {
				t.Fatalf("got %s/%s, want unavailable", res.Outcome, res.Rule)
			}
			if res.Allowed() || res.User != nil || res.AppPassword != nil {
				t.Errorf("unavailable result carries a user or is allowed: %+v", res)
			}
			if _, f, _ := e.throttle.calls(); f != 0 {
				t.Errorf("throttle failures: got %d, want 0 (an outage is not a guess)", f)
			}
			if strings.Contains(e.logs.String(), secret) {
				t.Errorf("logs contain the secret")
			}
		})
	}
}

// TestExplain: Explain decides like Login but has no side effects.
func TestExplain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ap, secret := e.create(t, store.CreateRequest{User: "alice"})
	e.throttle.blocked = true // Explain must not consult the throttle
	e.throttle.delay = time.Hour
	tests := []struct {
		name     string
		r        login.Request
		want     policy.Outcome
		wantRule policy.Rule
	}{
		{"allowed", req("alice", secret), policy.Allow, policy.RuleAllowAppPassword},
		{"wrong secret", req("alice", "wrong"), policy.BadCredentials, policy.RuleBadCredentials},
		{"admin with a wrong secret", req("bob", "x"), policy.BadCredentials, policy.RuleBadCredentials},
		{"no secret", req("alice", ""), policy.BadCredentials, policy.RuleBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res := e.svc.Explain(ctx, tt.r)
			if res.Outcome != tt.want || res.Rule != tt.wantRule {
				t.Fatalf("got %s/%s, want %s/%s", res.Outcome, res.Rule, tt.want, tt.wantRule)
			}
			if len(res.Trace) == 0 || res.Trace[len(res.Trace)-1].Rule != tt.wantRule {
				t.Errorf("trace does not end with %s:\n%s", tt.wantRule, res.TraceString())
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("Explain waited %v, want no delay", took)
			}
		})
	}
	if c, f, s := e.throttle.calls(); c+f+s != 0 {
		t.Errorf("throttle calls: got %d checks %d failures %d successes, want none", c, f, s)
	}
	if err := e.bolt.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if recs := e.auditLog(t); len(recs) != 0 {
		t.Errorf("audit records after Explain: got %+v, want none", recs)
	}
	list, err := e.bolt.List(ctx, "alice")
	if err != nil || len(list) != 1 || list[0].ID != ap.ID {
		t.Fatalf("List: got %+v, %v", list, err)
	}
	if !list[0].LastUse.Time.IsZero() {
		t.Errorf("last use after Explain: got %+v, want none", list[0].LastUse)
	}
}

func TestObserveAndLogLine(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	var seen []policy.Outcome
	e.svc = New(Options{Store: e.store, Directory: e.dir, Policy: testPolicy(), Logger: e.svc.log, Now: e.clock.Now,
		Observe: func(_ login.Request, res login.Result, took time.Duration) {
			if took < 0 {
				t.Errorf("negative duration %v", took)
			}
			seen = append(seen, res.Outcome)
		}})
	e.svc.Login(context.Background(), req("alice", secret))
	e.svc.Login(context.Background(), req("alice", "nope"))
	e.svc.Explain(context.Background(), req("alice", secret))
	if want := []policy.Outcome{policy.Allow, policy.BadCredentials}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("observed: got %v, want %v (Explain is not observed)", seen, want)
	}
	logs := e.logs.String()
	for _, want := range []string{"decision=allow", "rule=app_password", "decision=bad_credentials", "user=alice", "ip=198.51.100.7", "proto=imap"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if n := strings.Count(logs, "msg=login"); n != 2 {
		t.Errorf("login log lines: got %d, want 2 (one per Login, none for Explain)", n)
	}
}

func TestSetDirectory(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	d2, err := directory.NewStatic([]directory.StaticUser{{Name: "alice", Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.SetDirectory(d2)
	if e.svc.Directory() != d2 {
		t.Errorf("Directory(): got %v, want the new one", e.svc.Directory())
	}
	if res := e.svc.Login(context.Background(), req("alice", secret)); res.Rule != policy.RuleDisabled {
		t.Errorf("after SetDirectory: got %s, want user_disabled", res.Rule)
	}
}

func TestConcurrentLogins(t *testing.T) {
	e := newEnv(t)
	_, secret := e.create(t, store.CreateRequest{User: "alice"})
	th := throttle.New(throttle.Options{BaseDelay: -1})
	e.svc = New(Options{Store: e.store, Directory: e.dir, Policy: testPolicy(), Throttle: th, Logger: discard(), Now: e.clock.Now})
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for i := range 50 {
				want := policy.Allow
				s := secret
				if (g+i)%5 == 0 {
					s, want = "bad", policy.BadCredentials
				}
				if res := e.svc.Login(context.Background(), req("alice", s)); res.Outcome != want && res.Outcome != policy.Throttled {
					err = errors.New("got " + res.Outcome.String() + ", want " + want.String())
				}
				if i%10 == 0 {
					e.svc.SetPolicy(testPolicy())
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
