package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestTraceText checks that the rendered trace names the deciding rule and
// the facts it looked at.
func TestTraceText(t *testing.T) {
	tests := []struct {
		name string
		cfg  *Config
		in   Input
		want []string // substrings of the last line
	}{
		{"tls", cfg(), in(alice(), appPW(), plaintext), []string{"FAIL", "tls_required", "198.51.100.7"}},
		{"throttled", cfg(), in(alice(), nil, throttled), []string{"FAIL", "throttled", "secret not checked"}},
		{"untrusted primary", cfg(), in(alice(), primary()), []string{"FAIL", "bad_credentials", "outside trusted_networks"}},
		{"admin group", cfg(func(c *Config) { c.AdminGroups = []string{"wheel"} }), in(alice(groups("wheel")), appPW()), []string{"FAIL", "admin", "admin group wheel"}},
		{"user_protocols", cfg(func(c *Config) { c.UserProtocols = map[string][]string{"alice": {SMTP}} }), in(alice(), appPW()), []string{"FAIL", "protocol_disabled_for_user", "[smtp]"}},
		{"expired", cfg(), in(alice(), appPW(func(c *Credential) { c.Expires = now })), []string{"FAIL", "expired", "2025-06-01T12:00:00Z"}},
		{"allow", cfg(), in(alice(), appPW()), []string{"ok", "app_password", "allowed"}},
		{"allow primary", cfg(), in(alice(), primary(), from("10.9.9.9")), []string{"ok", "trusted_network_primary"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.cfg, tt.in)
			text := strings.TrimRight(d.TraceString(), "\n")
			lines := strings.Split(text, "\n")
			if len(lines) != len(d.Trace) {
				t.Fatalf("got %d lines, want %d (one per step)", len(lines), len(d.Trace))
			}
			last := lines[len(lines)-1]
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("last trace line %q: want it to contain %q", last, w)
				}
			}
		})
	}
	// A full allow walks every rule in order.
	d := Decide(cfg(), in(alice(), appPW()))
	var got []Rule
	for _, s := range d.Trace {
		got = append(got, s.Rule)
	}
	want := []Rule{RuleTLSRequired, RuleThrottled, RuleBadCredentials, RuleLegacyBlocked, RuleAdmin,
		RuleDisabled, RuleProtocolOff, RuleScope, RuleNetwork, RuleExpired, RuleAllowAppPassword}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allow trace rules: got %v, want %v", got, want)
	}
	if strings.Contains(d.TraceString(), "FAIL") {
		t.Errorf("allow trace contains FAIL:\n%s", d.TraceString())
	}
}

func TestPrecheck(t *testing.T) {
	tests := []struct {
		name     string
		in       Input
		wantOK   bool
		wantRule Rule
	}{
		{"tls ok", in(nil, nil), true, ""},
		{"plaintext", in(nil, nil, plaintext), false, RuleTLSRequired},
		{"throttled", in(nil, nil, throttled), false, RuleThrottled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := Precheck(cfg(), tt.in)
			if ok != tt.wantOK || d.Rule != tt.wantRule {
				t.Errorf("got ok=%v rule=%q, want ok=%v rule=%q", ok, d.Rule, tt.wantOK, tt.wantRule)
			}
			if !ok {
				// The final decision must agree with Decide.
				if full := Decide(cfg(), tt.in); !reflect.DeepEqual(full, d) {
					t.Errorf("Precheck decision %+v differs from Decide %+v", d, full)
				}
			}
		})
	}
}

// TestDecidePure checks that Decide is a pure function: the same input twice
// gives deep-equal decisions, and the input is not modified.
func TestDecidePure(t *testing.T) {
	inputs := []struct {
		cfg *Config
		in  Input
	}{
		{cfg(), in(alice(), appPW())},
		{cfg(), in(alice(), nil)},
		{cfg(), in(alice(admin), appPW())},
		{cfg(func(c *Config) { c.UserProtocols = map[string][]string{"alice": {SMTP}, "bob": {IMAP}} }), in(alice(), appPW())},
		{cfg(func(c *Config) { c.ExpireUnusedAfter = time.Hour }), in(alice(), appPW(func(c *Credential) { c.Scope = []string{IMAP} }))},
		{cfg(), in(alice(), primary(), from("10.0.0.1"))},
	}
	for i, tt := range inputs {
		cfgCopy := *tt.cfg
		inCopy := tt.in
		userCopy, credCopy := *tt.in.User, Credential{}
		if tt.in.Credential != nil {
			credCopy = *tt.in.Credential
		}
		d1 := Decide(tt.cfg, tt.in)
		d2 := Decide(tt.cfg, tt.in)
		if !reflect.DeepEqual(d1, d2) {
			t.Errorf("input %d: decisions differ:\n%+v\n%+v", i, d1, d2)
		}
		if len(d1.Trace) > 0 && len(d2.Trace) > 0 && &d1.Trace[0] == &d2.Trace[0] {
			t.Errorf("input %d: decisions share a trace slice", i)
		}
		if !reflect.DeepEqual(cfgCopy, *tt.cfg) || !reflect.DeepEqual(inCopy, tt.in) || !reflect.DeepEqual(userCopy, *tt.in.User) {
			t.Errorf("input %d: Decide modified its input", i)
		}
		if tt.in.Credential != nil && !reflect.DeepEqual(credCopy, *tt.in.Credential) {
			t.Errorf("input %d: Decide modified the credential", i)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	want := map[Outcome]string{Allow: "allow", BadCredentials: "bad_credentials", Refused: "refused",
		Expired: "expired", TLSRequired: "tls_required", Throttled: "throttled", Unavailable: "unavailable", 99: "outcome(99)"}
	for o, w := range want {
		if got := o.String(); got != w {
			t.Errorf("Outcome(%d).String(): got %q, want %q", int(o), got, w)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	c := cfg(func(c *Config) {
		c.Admins = []string{"root", "admin"}
		c.BlockedGroups = []string{"contractors"}
		c.UserProtocols = map[string][]string{"printer": {SMTP}}
		c.ExpireUnusedAfter = 90 * 24 * time.Hour
	})
	input := in(alice(), appPW(func(c *Credential) {
		c.Scope = []string{IMAP, SMTP}
		c.Networks = prefixes("198.51.100.0/24")
		c.LastUsed = now.Add(-time.Hour)
	}))
	for _, tc := range []struct {
		name    string
		noTrace bool
	}{{"trace", false}, {"no-trace", true}} {
		b.Run(tc.name, func(b *testing.B) {
			input.NoTrace = tc.noTrace
			b.ReportAllocs()
			for b.Loop() {
				if d := Decide(c, input); d.Outcome != Allow {
					b.Fatalf("got %s, want allow", d.Outcome)
				}
			}
		})
	}
}

// TestNoTraceSameDecision: skipping the trace changes nothing else.
func TestNoTraceSameDecision(t *testing.T) {
	c := cfg(func(c *Config) { c.Admins = []string{"alice"} })
	for _, input := range []Input{in(alice(), appPW()), in(alice(), nil), in(nil, nil)} {
		with := Decide(c, input)
		input.NoTrace = true
		without := Decide(c, input)
		if with.Outcome != without.Outcome || with.Rule != without.Rule || with.Reason != without.Reason {
			t.Errorf("got %v/%s/%q without trace, want %v/%s/%q", without.Outcome, without.Rule, without.Reason,
				with.Outcome, with.Rule, with.Reason)
		}
		if len(without.Trace) != 0 || len(with.Trace) == 0 {
			t.Errorf("got %d trace steps without, %d with", len(without.Trace), len(with.Trace))
		}
	}
}
