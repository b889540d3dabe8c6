package systemtest

import (
	"context"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/policy"
)

// enumCase is one kind of failed login an attacker can compare.
type enumCase struct {
	name   string
	user   string
	secret func(lg *enumEnv) string
}

type enumEnv struct {
	alicePW, bobPW string
}

// The wrong secrets look like real app passwords, so every case pays the
// same normalisation and HMAC.
const wrongSecret = "ABCD-EFGH-JKMN-PQRS"

var enumCases = []enumCase{
	{"unknown user", "mallory", func(*enumEnv) string { return wrongSecret }},
	{"known user, wrong password", "alice", func(*enumEnv) string { return wrongSecret }},
	{"disabled user, wrong password", "dave", func(*enumEnv) string { return wrongSecret }},
	{"known user, another user's app password", "alice", func(e *enumEnv) string { return e.bobPW }},
	{"unknown user, a real app password", "mallory", func(e *enumEnv) string { return e.alicePW }},
}

func startEnumLegate(t *testing.T) (*Legate, *enumEnv) {
	lg := StartLegate(t, LegateOptions{Mutate: func(c *config.Config) {
		c.Policy.AllowPlaintextLoopback = true
		c.Throttle.MaxFailuresPerIP = 10000
		c.Throttle.MaxFailuresPerUser = 10000
	}})
	e := &enumEnv{alicePW: lg.CreateAppPassword(t, "alice", "Laptop"), bobPW: lg.CreateAppPassword(t, "bob", "Phone")}
	lg.CreateAppPassword(t, "dave", "Old") // a disabled user may still hold one
	return lg, e
}

// TestNoEnumerationText: every way of failing gets the same words, over the
// real IMAP front-end and from the login service.
func TestNoEnumerationText(t *testing.T) {
	lg, e := startEnumLegate(t)
	addr := lg.AddrOf(t, "imap")
	var first string
	for i, tc := range enumCases {
		c, _ := DialIMAP(t, addr, nil)
		got, err := c.Login(fmt.Sprintf("a%d", i), tc.user, tc.secret(e), 15*time.Second)
		if err != nil {
			t.Fatalf("%s: LOGIN: %v", tc.name, err)
		}
		if !strings.HasPrefix(got, "NO [AUTHENTICATIONFAILED]") {
			t.Errorf("%s: got %q, want NO [AUTHENTICATIONFAILED] ...", tc.name, got)
		}
		if i == 0 {
			first = got
		} else if got != first {
			t.Errorf("%s: got %q, want the same answer as %s: %q", tc.name, got, enumCases[0].name, first)
		}
	}
	// The same through the login service: outcome, rule and reason.
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.10")
	var want login.Result
	for i, tc := range enumCases {
		res := lg.Auth().Explain(ctx, login.Request{User: tc.user, Secret: tc.secret(e), IP: ip, Protocol: policy.IMAP, TLS: true})
		if i == 0 {
			want = res
		}
		if res.Outcome != policy.BadCredentials || res.Outcome != want.Outcome || res.Rule != want.Rule || res.Reason != want.Reason {
			t.Errorf("%s: got %v/%s/%q, want bad_credentials/%s/%q", tc.name, res.Outcome, res.Rule, res.Reason, want.Rule, want.Reason)
		}
		if res.User != nil || res.AppPassword != nil {
			t.Errorf("%s: result names user %v / app password %v, want neither", tc.name, res.User, res.AppPassword)
		}
	}
	// Control: the real password does work, so the cases above failed for
	// the right reason.
	if res := lg.Auth().Explain(ctx, login.Request{User: "alice", Secret: e.alicePW, IP: ip, Protocol: policy.IMAP, TLS: true}); !res.Allowed() {
		t.Errorf("alice with her app password: got %v/%s, want allow", res.Outcome, res.Rule)
	}
}

// TestNoEnumerationTiming compares the median cost of a failed login in
// each case, through auth.Service.Login in-process (throttling off, so no
// delays; audit and logging on, as in production).
func TestNoEnumerationTiming(t *testing.T) {
	lg, e := startEnumLegate(t)
	svc := auth.New(auth.Options{Store: lg.Auth().Store(), Directory: lg.Auth().Directory(),
		Policy: lg.Auth().Policy(), Logger: discardLogger()})
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.10")
	const tries, rounds = 600, 8
	reqs := make([]login.Request, len(enumCases))
	for i, tc := range enumCases {
		reqs[i] = login.Request{User: tc.user, Secret: tc.secret(e), IP: ip, Protocol: policy.IMAP, TLS: true}
	}
	for i := 0; i < 50; i++ { // warm up pools and caches
		for _, r := range reqs {
			svc.Login(ctx, r)
		}
	}
	// A round interleaves the cases so drift (GC, audit flushes, the other
	// core) hits all of them alike. Up to eight rounds: scheduling noise (and
	// the race detector) can spoil one; a real difference shows in every round.
	var spread float64
	for round := 1; round <= rounds; round++ {
		samples := make([][]time.Duration, len(reqs))
		for i := 0; i < tries; i++ {
			// Rotate the order each time, so no case always runs right
			// after another (cache and branch-predictor effects cancel).
			for k := range reqs {
				j := (i + k) % len(reqs)
				r := reqs[j]
				start := time.Now()
				res := svc.Login(ctx, r)
				samples[j] = append(samples[j], time.Since(start))
				if res.Outcome != policy.BadCredentials {
					t.Fatalf("%s: got %v, want bad_credentials", enumCases[j].name, res.Outcome)
				}
			}
		}
		var lo, hi time.Duration
		var table strings.Builder
		fmt.Fprintf(&table, "round %d, median of %d tries:\n", round, tries)
		for j, s := range samples {
			m := median(s)
			fmt.Fprintf(&table, "  %-42s %v\n", enumCases[j].name, m)
			if j == 0 || m < lo {
				lo = m
			}
			if m > hi {
				hi = m
			}
		}
		spread = float64(hi-lo) / float64(lo)
		fmt.Fprintf(&table, "  spread (max-min)/min: %.1f%%", 100*spread)
		t.Log(table.String())
		if spread <= 0.05 {
			return
		}
	}
	t.Errorf("failed-login medians differ by %.1f%% in every one of %d rounds, want at most 5%%", 100*spread, rounds)
}
