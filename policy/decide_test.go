package policy

import (
	"net/netip"
	"testing"
	"time"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// cfg is the default policy with trusted networks, as most cases use.
func cfg(mod ...func(*Config)) *Config {
	c := Default()
	c.TrustedNetworks = prefixes("10.0.0.0/8", "fd00::/8")
	for _, m := range mod {
		m(&c)
	}
	return &c
}

func alice(mod ...func(*User)) *User {
	u := &User{Name: "alice", Groups: []string{"staff"}}
	for _, m := range mod {
		m(u)
	}
	return u
}

func appPW(mod ...func(*Credential)) *Credential {
	c := &Credential{Kind: AppPassword, ID: "abcd2345", Name: "Laptop", Created: now.Add(-30 * 24 * time.Hour)}
	for _, m := range mod {
		m(c)
	}
	return c
}

func primary() *Credential { return &Credential{Kind: Primary} }

// in builds an input: TLS IMAP from a public address unless changed.
func in(u *User, c *Credential, mod ...func(*Input)) Input {
	i := Input{
		Request:    Request{User: "alice", IP: addr("198.51.100.7"), Protocol: IMAP, TLS: true},
		User:       u,
		Credential: c,
		Now:        now,
	}
	for _, m := range mod {
		m(&i)
	}
	return i
}

func from(ip string) func(*Input) { return func(i *Input) { i.IP = addr(ip) } }

func proto(p string) func(*Input) { return func(i *Input) { i.Protocol = p } }

func plaintext(i *Input) { i.TLS = false }

func throttled(i *Input) { i.Throttled = true }

func at(t time.Time) func(*Input) { return func(i *Input) { i.Now = t } }

func admin(u *User) { u.Admin = true }

func disabled(u *User) { u.Disabled = true }

func groups(g ...string) func(*User) { return func(u *User) { u.Groups = g } }

type decideCase struct {
	name       string
	cfg        *Config
	in         Input
	want       Outcome
	wantRule   Rule
	wantReason string // checked when not empty
}

func runDecide(t *testing.T, tests []decideCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.cfg, tt.in)
			if d.Outcome != tt.want || d.Rule != tt.wantRule {
				t.Fatalf("got %s/%s, want %s/%s\n%s", d.Outcome, d.Rule, tt.want, tt.wantRule, d.TraceString())
			}
			if tt.wantReason != "" && d.Reason != tt.wantReason {
				t.Errorf("reason: got %q, want %q", d.Reason, tt.wantReason)
			}
			checkTrace(t, d)
		})
	}
}

// checkTrace asserts the trace invariants: it is not empty, its last step
// names the deciding rule (failed for a denial, passed for an allow), and
// every earlier step passed.
func checkTrace(t *testing.T, d Decision) {
	t.Helper()
	if len(d.Trace) == 0 {
		t.Fatalf("empty trace")
	}
	last := d.Trace[len(d.Trace)-1]
	if last.Rule != d.Rule {
		t.Errorf("last trace step: got rule %s, want %s\n%s", last.Rule, d.Rule, d.TraceString())
	}
	if last.Passed != d.Allowed() {
		t.Errorf("last trace step passed=%v, want %v\n%s", last.Passed, d.Allowed(), d.TraceString())
	}
	for i, s := range d.Trace[:len(d.Trace)-1] {
		if !s.Passed {
			t.Errorf("trace step %d (%s) failed but is not the last\n%s", i, s.Rule, d.TraceString())
		}
	}
	if d.Outcome == BadCredentials && d.Reason != "" {
		t.Errorf("bad credentials reason: got %q, want empty (generic answer)", d.Reason)
	}
	if d.Outcome != BadCredentials && d.Outcome != Allow && d.Reason == "" {
		t.Errorf("%s: got empty reason, want a short reason", d.Outcome)
	}
}

func TestDecideTLS(t *testing.T) {
	loopbackOK := cfg(func(c *Config) { c.AllowPlaintextLoopback = true })
	runDecide(t, []decideCase{
		{"TLS allowed", cfg(), in(alice(), appPW()), Allow, RuleAllowAppPassword, ""},
		{"plaintext refused", cfg(), in(alice(), appPW(), plaintext), TLSRequired, RuleTLSRequired, "TLS required"},
		{"plaintext from loopback refused without exemption", cfg(), in(alice(), appPW(), plaintext, from("127.0.0.1")), TLSRequired, RuleTLSRequired, ""},
		{"plaintext 127.0.0.1 exempt", loopbackOK, in(alice(), appPW(), plaintext, from("127.0.0.1")), Allow, RuleAllowAppPassword, ""},
		{"plaintext 127.0.0.5 exempt", loopbackOK, in(alice(), appPW(), plaintext, from("127.0.0.5")), Allow, RuleAllowAppPassword, ""},
		{"plaintext ::1 exempt", loopbackOK, in(alice(), appPW(), plaintext, from("::1")), Allow, RuleAllowAppPassword, ""},
		{"plaintext ::ffff:127.0.0.1 exempt", loopbackOK, in(alice(), appPW(), plaintext, from("::ffff:127.0.0.1")), Allow, RuleAllowAppPassword, ""},
		{"plaintext non-loopback with exemption refused", loopbackOK, in(alice(), appPW(), plaintext, from("10.1.2.3")), TLSRequired, RuleTLSRequired, ""},
		{"plaintext allowed when require_tls off", cfg(func(c *Config) { c.RequireTLS = false }), in(alice(), appPW(), plaintext), Allow, RuleAllowAppPassword, ""},
		{"zero config accepts plaintext", &Config{}, in(alice(), appPW(), plaintext), Allow, RuleAllowAppPassword, ""},
	})
}

func TestCredentialsAccepted(t *testing.T) {
	tests := []struct {
		cfg  *Config
		tls  bool
		ip   string
		want bool
	}{
		{cfg(), true, "198.51.100.7", true},
		{cfg(), false, "198.51.100.7", false},
		{cfg(), false, "127.0.0.1", false},
		{cfg(func(c *Config) { c.AllowPlaintextLoopback = true }), false, "127.0.0.5", true},
		{cfg(func(c *Config) { c.AllowPlaintextLoopback = true }), false, "::1", true},
		{cfg(func(c *Config) { c.AllowPlaintextLoopback = true }), false, "::2", false},
		{cfg(func(c *Config) { c.RequireTLS = false }), false, "198.51.100.7", true},
	}
	for _, tt := range tests {
		if got := tt.cfg.CredentialsAccepted(tt.tls, addr(tt.ip)); got != tt.want {
			t.Errorf("CredentialsAccepted(tls=%v, %s) with loopback=%v: got %v, want %v",
				tt.tls, tt.ip, tt.cfg.AllowPlaintextLoopback, got, tt.want)
		}
	}
	if cfg(func(c *Config) { c.AllowPlaintextLoopback = true }).CredentialsAccepted(false, netip.Addr{}) {
		t.Errorf("invalid address on plaintext: got accepted, want refused")
	}
}

func TestDecideSecret(t *testing.T) {
	runDecide(t, []decideCase{
		{"unknown user", cfg(), in(nil, nil), BadCredentials, RuleBadCredentials, ""},
		{"wrong secret", cfg(), in(alice(), nil), BadCredentials, RuleBadCredentials, ""},
		{"credential without user", cfg(), in(nil, appPW()), BadCredentials, RuleBadCredentials, ""},
		{"primary from trusted IPv4", cfg(), in(alice(), primary(), from("10.1.2.3")), Allow, RuleAllowPrimary, ""},
		{"primary from trusted IPv6 fd00::/8", cfg(), in(alice(), primary(), from("fd12:3456::1")), Allow, RuleAllowPrimary, ""},
		{"primary from IPv4-mapped trusted", cfg(), in(alice(), primary(), from("::ffff:10.1.2.3")), Allow, RuleAllowPrimary, ""},
		{"primary from outside", cfg(), in(alice(), primary(), from("198.51.100.7")), BadCredentials, RuleBadCredentials, ""},
		{"primary from outside IPv6", cfg(), in(alice(), primary(), from("2001:db8::1")), BadCredentials, RuleBadCredentials, ""},
		{"primary with no trusted networks", cfg(func(c *Config) { c.TrustedNetworks = nil }), in(alice(), primary(), from("10.1.2.3")), BadCredentials, RuleBadCredentials, ""},
		{"primary skips app-password rules", cfg(func(c *Config) { c.ExpireUnusedAfter = time.Hour }), in(alice(), primary(), from("10.1.2.3")), Allow, RuleAllowPrimary, ""},
	})
}

func TestDecidePolicy(t *testing.T) {
	runDecide(t, []decideCase{
		{"legacy blocked for all", cfg(func(c *Config) { c.BlockLegacyAuth = true }), in(alice(), appPW()), Refused, RuleLegacyBlocked, "legacy authentication is blocked"},
		{"user blocked", cfg(func(c *Config) { c.BlockedUsers = []string{"Alice"} }), in(alice(), appPW()), Refused, RuleUserBlocked, ""},
		{"group blocked", cfg(func(c *Config) { c.BlockedGroups = []string{"contractors"} }), in(alice(groups("staff", "Contractors")), appPW()), Refused, RuleGroupBlocked, ""},
		{"other group not blocked", cfg(func(c *Config) { c.BlockedGroups = []string{"contractors"} }), in(alice(), appPW()), Allow, RuleAllowAppPassword, ""},
		{"admin flag from directory", cfg(), in(alice(admin), appPW()), Refused, RuleAdmin, "administrators cannot use legacy authentication"},
		{"admin listed in policy.admins", cfg(func(c *Config) { c.Admins = []string{"root", "ALICE"} }), in(alice(), appPW()), Refused, RuleAdmin, ""},
		{"admin via admin group", cfg(func(c *Config) { c.AdminGroups = []string{"cn=admins,dc=example"} }), in(alice(groups("CN=Admins,dc=example")), appPW()), Refused, RuleAdmin, ""},
		{"admin with primary from trusted net", cfg(), in(alice(admin), primary(), from("10.0.0.1")), Refused, RuleAdmin, ""},
		{"disabled", cfg(), in(alice(disabled), appPW()), Refused, RuleDisabled, "account disabled"},
		{"protocol off globally", cfg(func(c *Config) { c.Protocols = []string{SMTP} }), in(alice(), appPW()), Refused, RuleProtocolOff, "imap is disabled"},
		{"empty protocol list allows none", cfg(func(c *Config) { c.Protocols = []string{} }), in(alice(), appPW()), Refused, RuleProtocolOff, ""},
		{"nil protocol list allows all", cfg(func(c *Config) { c.Protocols = nil }), in(alice(), appPW(), proto(LDAP)), Allow, RuleAllowAppPassword, ""},
		{"user_protocols refuses", cfg(func(c *Config) { c.UserProtocols = map[string][]string{"alice": {SMTP}} }), in(alice(), appPW()), Refused, RuleUserProtocolOff, "imap is disabled for this user"},
		{"user_protocols key case-insensitive", cfg(func(c *Config) { c.UserProtocols = map[string][]string{"Alice": {SMTP}} }), in(alice(), appPW()), Refused, RuleUserProtocolOff, ""},
		{"user_protocols allows", cfg(func(c *Config) { c.UserProtocols = map[string][]string{"alice": {SMTP}} }), in(alice(), appPW(), proto(SMTP)), Allow, RuleAllowAppPassword, ""},
		{"user_protocols of someone else", cfg(func(c *Config) { c.UserProtocols = map[string][]string{"printer": {SMTP}} }), in(alice(), appPW()), Allow, RuleAllowAppPassword, ""},
		{"user_protocols applies to primary", cfg(func(c *Config) { c.UserProtocols = map[string][]string{"alice": {SMTP}} }), in(alice(), primary(), from("10.0.0.1")), Refused, RuleUserProtocolOff, ""},
		{"outside scope", cfg(), in(alice(), appPW(func(c *Credential) { c.Scope = []string{SMTP, LDAP} })), Refused, RuleScope, "app password not valid for imap"},
		{"inside scope", cfg(), in(alice(), appPW(func(c *Credential) { c.Scope = []string{SMTP, IMAP} })), Allow, RuleAllowAppPassword, ""},
		{"outside networks", cfg(), in(alice(), appPW(func(c *Credential) { c.Networks = prefixes("192.0.2.0/24") })), Refused, RuleNetwork, "app password not valid from this network"},
		{"inside networks", cfg(), in(alice(), appPW(func(c *Credential) { c.Networks = prefixes("198.51.100.0/24") })), Allow, RuleAllowAppPassword, ""},
		{"inside IPv6 networks", cfg(), in(alice(), appPW(func(c *Credential) { c.Networks = prefixes("2001:db8::/32") }), from("2001:db8:1::5")), Allow, RuleAllowAppPassword, ""},
		{"IPv4-mapped inside networks", cfg(), in(alice(), appPW(func(c *Credential) { c.Networks = prefixes("198.51.100.0/24") }), from("::ffff:198.51.100.7")), Allow, RuleAllowAppPassword, ""},
	})
}

func TestDecideExpiry(t *testing.T) {
	expires := func(t time.Time) func(*Credential) { return func(c *Credential) { c.Expires = t } }
	created := func(t time.Time) func(*Credential) { return func(c *Credential) { c.Created = t } }
	lastUsed := func(t time.Time) func(*Credential) { return func(c *Credential) { c.LastUsed = t } }
	changed := func(t time.Time) func(*User) { return func(u *User) { u.PasswordChanged = t } }
	unused90 := cfg(func(c *Config) { c.ExpireUnusedAfter = 90 * 24 * time.Hour })
	day := 24 * time.Hour
	runDecide(t, []decideCase{
		{"expires in the future", cfg(), in(alice(), appPW(expires(now.Add(time.Second)))), Allow, RuleAllowAppPassword, ""},
		{"expires exactly now", cfg(), in(alice(), appPW(expires(now))), Expired, RuleExpired, "app password expired"},
		{"expired a second ago", cfg(), in(alice(), appPW(expires(now.Add(-time.Second)))), Expired, RuleExpired, ""},
		{"created before password change", cfg(), in(alice(changed(now.Add(-day))), appPW(created(now.Add(-2*day)))), Expired, RulePasswordChanged, "app password predates a password change"},
		{"created after password change", cfg(), in(alice(changed(now.Add(-2*day))), appPW(created(now.Add(-day)))), Allow, RuleAllowAppPassword, ""},
		{"created at the password change", cfg(), in(alice(changed(now.Add(-day))), appPW(created(now.Add(-day)))), Allow, RuleAllowAppPassword, ""},
		{"password change unknown", cfg(), in(alice(), appPW(created(now.Add(-day)))), Allow, RuleAllowAppPassword, ""},
		{"revoke_on_password_change off", cfg(func(c *Config) { c.RevokeOnPasswordChange = false }), in(alice(changed(now.Add(-day))), appPW(created(now.Add(-2*day)))), Allow, RuleAllowAppPassword, ""},
		{"used recently", unused90, in(alice(), appPW(created(now.Add(-200*day)), lastUsed(now.Add(-89*day)))), Allow, RuleAllowAppPassword, ""},
		{"unused too long", unused90, in(alice(), appPW(created(now.Add(-200*day)), lastUsed(now.Add(-91*day)))), Expired, RuleUnused, "app password expired (unused)"},
		{"unused exactly the limit", unused90, in(alice(), appPW(created(now.Add(-200*day)), lastUsed(now.Add(-90*day)))), Expired, RuleUnused, ""},
		{"never used counts from created (old)", unused90, in(alice(), appPW(created(now.Add(-91*day)))), Expired, RuleUnused, ""},
		{"never used counts from created (new)", unused90, in(alice(), appPW(created(now.Add(-89*day)))), Allow, RuleAllowAppPassword, ""},
		{"expire_unused_after zero means never", cfg(), in(alice(), appPW(created(now.Add(-5000*day)))), Allow, RuleAllowAppPassword, ""},
	})
}

// TestDecideOrder checks that when several rules would refuse, the earliest
// in docs/contract.md §3 order decides.
func TestDecideOrder(t *testing.T) {
	expired := func(c *Credential) { c.Expires = now.Add(-time.Hour) }
	allOff := func(c *Config) {
		c.BlockLegacyAuth = true
		c.Protocols = []string{SMTP}
	}
	runDecide(t, []decideCase{
		{"TLS before throttle", cfg(), in(alice(), appPW(), plaintext, throttled), TLSRequired, RuleTLSRequired, ""},
		{"throttled before bad secret", cfg(), in(alice(), nil, throttled), Throttled, RuleThrottled, "too many failures, try later"},
		{"throttled before unknown user", cfg(), in(nil, nil, throttled), Throttled, RuleThrottled, ""},
		{"throttled even with a good secret", cfg(), in(alice(), appPW(), throttled), Throttled, RuleThrottled, ""},
		{"bad secret before block_legacy_auth", cfg(allOff), in(alice(admin, disabled), nil), BadCredentials, RuleBadCredentials, ""},
		{"untrusted primary before admin", cfg(), in(alice(admin), primary(), from("198.51.100.7")), BadCredentials, RuleBadCredentials, ""},
		{"legacy blocked before admin", cfg(allOff), in(alice(admin, disabled), appPW()), Refused, RuleLegacyBlocked, ""},
		{"blocked user before admin", cfg(func(c *Config) { c.BlockedUsers = []string{"alice"} }), in(alice(admin), appPW()), Refused, RuleUserBlocked, ""},
		{"blocked user with out-of-scope password", cfg(func(c *Config) { c.BlockedUsers = []string{"alice"} }), in(alice(), appPW(func(c *Credential) { c.Scope = []string{SMTP} })), Refused, RuleUserBlocked, ""},
		{"blocked group before disabled", cfg(func(c *Config) { c.BlockedGroups = []string{"staff"} }), in(alice(disabled), appPW()), Refused, RuleGroupBlocked, ""},
		{"admin before disabled", cfg(), in(alice(admin, disabled), appPW()), Refused, RuleAdmin, ""},
		{"admin with expired password is refused as admin", cfg(), in(alice(admin), appPW(expired)), Refused, RuleAdmin, ""},
		{"disabled before protocol off", cfg(func(c *Config) { c.Protocols = []string{SMTP} }), in(alice(disabled), appPW()), Refused, RuleDisabled, ""},
		{"protocol off before user_protocols", cfg(func(c *Config) {
			c.Protocols = []string{SMTP}
			c.UserProtocols = map[string][]string{"alice": {LDAP}}
		}), in(alice(), appPW()), Refused, RuleProtocolOff, ""},
		{"user_protocols before scope", cfg(func(c *Config) { c.UserProtocols = map[string][]string{"alice": {LDAP}} }), in(alice(), appPW(func(c *Credential) { c.Scope = []string{SMTP} })), Refused, RuleUserProtocolOff, ""},
		{"scope before networks", cfg(), in(alice(), appPW(func(c *Credential) {
			c.Scope = []string{SMTP}
			c.Networks = prefixes("192.0.2.0/24")
		})), Refused, RuleScope, ""},
		{"networks before expiry", cfg(), in(alice(), appPW(expired, func(c *Credential) { c.Networks = prefixes("192.0.2.0/24") })), Refused, RuleNetwork, ""},
		{"expiry before password change", cfg(), in(alice(func(u *User) { u.PasswordChanged = now }), appPW(expired)), Expired, RuleExpired, ""},
		{"password change before unused", cfg(func(c *Config) { c.ExpireUnusedAfter = time.Hour }), in(alice(func(u *User) { u.PasswordChanged = now }), appPW()), Expired, RulePasswordChanged, ""},
	})
}

func TestInNetworks(t *testing.T) {
	nets := prefixes("10.0.0.0/8", "fd00::/8", "2001:db8:1::/48")
	tests := []struct {
		ip   netip.Addr
		want bool
	}{
		{addr("10.1.2.3"), true},
		{addr("::ffff:10.1.2.3"), true},
		{addr("11.0.0.1"), false},
		{addr("::ffff:11.0.0.1"), false},
		{addr("fd12::1"), true},
		{addr("fe80::1"), false},
		{addr("2001:db8:1:ffff::1"), true},
		{addr("2001:db8:2::1"), false},
		{netip.Addr{}, false},
	}
	for _, tt := range tests {
		if got := InNetworks(tt.ip, nets); got != tt.want {
			t.Errorf("InNetworks(%v): got %v, want %v", tt.ip, got, tt.want)
		}
	}
	if InNetworks(addr("10.1.2.3"), nil) {
		t.Errorf("InNetworks with no networks: got true, want false")
	}
}

func TestUnusedExpired(t *testing.T) {
	c := cfg(func(c *Config) { c.ExpireUnusedAfter = time.Hour })
	tests := []struct {
		created, last time.Time
		want          bool
	}{
		{now.Add(-2 * time.Hour), time.Time{}, true},
		{now.Add(-30 * time.Minute), time.Time{}, false},
		{now.Add(-2 * time.Hour), now.Add(-time.Minute), false},
		{now.Add(-2 * time.Hour), now.Add(-time.Hour), true},
	}
	for _, tt := range tests {
		if got := c.UnusedExpired(tt.created, tt.last, now); got != tt.want {
			t.Errorf("UnusedExpired(%v, %v): got %v, want %v", tt.created, tt.last, got, tt.want)
		}
	}
	if cfg().UnusedExpired(now.Add(-1e6*time.Hour), time.Time{}, now) {
		t.Errorf("ExpireUnusedAfter 0: got expired, want never")
	}
}

func TestIsAdmin(t *testing.T) {
	c := cfg(func(c *Config) {
		c.Admins = []string{"root"}
		c.AdminGroups = []string{"wheel"}
	})
	tests := []struct {
		u    *User
		want bool
	}{
		{&User{Name: "root"}, true},
		{&User{Name: "ROOT"}, true},
		{&User{Name: "bob", Groups: []string{"WHEEL"}}, true},
		{&User{Name: "bob", Admin: true}, true},
		{&User{Name: "bob", Groups: []string{"staff"}}, false},
	}
	for _, tt := range tests {
		if got := c.IsAdmin(tt.u); got != tt.want {
			t.Errorf("IsAdmin(%+v): got %v, want %v", tt.u, got, tt.want)
		}
	}
}
