package policy

import (
	"testing"
	"time"
)

// TestMayUseLegacyAuthMatchesDecide: the helper control asks before creating
// an app password refuses with the same rule as a login by the same user.
func TestMayUseLegacyAuthMatchesDecide(t *testing.T) {
	tests := []struct {
		name string
		cfg  *Config
		u    *User
		want Rule // "" means allowed
	}{
		{"plain user", cfg(), alice(), ""},
		{"block_legacy_auth", cfg(func(c *Config) { c.BlockLegacyAuth = true }), alice(), RuleLegacyBlocked},
		{"blocked user", cfg(func(c *Config) { c.BlockedUsers = []string{"ALICE"} }), alice(), RuleUserBlocked},
		{"blocked group", cfg(func(c *Config) { c.BlockedGroups = []string{"Staff"} }), alice(), RuleGroupBlocked},
		{"directory admin", cfg(), alice(func(u *User) { u.Admin = true }), RuleAdmin},
		{"policy.admins", cfg(func(c *Config) { c.Admins = []string{"alice"} }), alice(), RuleAdmin},
		{"admin group", cfg(func(c *Config) { c.AdminGroups = []string{"staff"} }), alice(), RuleAdmin},
		{"blocked wins over admin", cfg(func(c *Config) { c.BlockedUsers = []string{"alice"} }), alice(func(u *User) { u.Admin = true }), RuleUserBlocked},
		// Disabled is a login rule, not a reason to refuse holding passwords.
		{"disabled", cfg(), alice(func(u *User) { u.Disabled = true }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := tt.cfg.MayUseLegacyAuth(tt.u)
			if ok != (tt.want == "") || r.Rule != tt.want {
				t.Fatalf("MayUseLegacyAuth = %+v, %v; want rule %q", r, ok, tt.want)
			}
			if tt.want == "" {
				return
			}
			d := Decide(tt.cfg, in(tt.u, appPW()))
			if d.Rule != r.Rule || d.Outcome != r.Outcome || d.Reason != r.Reason {
				t.Errorf("Decide = %s %s %q, helper = %s %s %q", d.Outcome, d.Rule, d.Reason, r.Outcome, r.Rule, r.Reason)
			}
		})
	}
}

// TestCredentialStatusMatchesDecide: the status `apppass list` shows is the
// rule a login with that password would fail on.
func TestCredentialStatusMatchesDecide(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name    string
		cfg     *Config
		cred    *Credential
		changed time.Time
		want    Rule
	}{
		{"current", cfg(), appPW(), time.Time{}, ""},
		{"expired", cfg(), appPW(func(c *Credential) { c.Expires = now }), time.Time{}, RuleExpired},
		{"not yet expired", cfg(), appPW(func(c *Credential) { c.Expires = now.Add(time.Second) }), time.Time{}, ""},
		{"password changed", cfg(), appPW(), now.Add(-day), RulePasswordChanged},
		{"changed before creation", cfg(), appPW(), now.Add(-60 * day), ""},
		{"change ignored when off", cfg(func(c *Config) { c.RevokeOnPasswordChange = false }), appPW(), now.Add(-day), ""},
		{"unused", cfg(func(c *Config) { c.ExpireUnusedAfter = 7 * day }), appPW(), time.Time{}, RuleUnused},
		{"recently used", cfg(func(c *Config) { c.ExpireUnusedAfter = 7 * day }), appPW(func(c *Credential) { c.LastUsed = now.Add(-day) }), time.Time{}, ""},
		{"expiry first", cfg(func(c *Config) { c.ExpireUnusedAfter = 7 * day }), appPW(func(c *Credential) { c.Expires = now }), now.Add(-day), RuleExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := tt.cfg.CredentialStatus(tt.cred, tt.changed, now)
			if ok != (tt.want == "") || r.Rule != tt.want {
				t.Fatalf("CredentialStatus = %+v, %v; want rule %q", r, ok, tt.want)
			}
			d := Decide(tt.cfg, in(alice(func(u *User) { u.PasswordChanged = tt.changed }), tt.cred))
			want := tt.want
			if want == "" {
				want = RuleAllowAppPassword
			}
			if d.Rule != want {
				t.Errorf("Decide rule = %s, want %s", d.Rule, want)
			}
		})
	}
}
