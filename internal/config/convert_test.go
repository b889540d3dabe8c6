package config

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
)

func TestFullFixture(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen.submissions", c.Listen.Submissions, "[::]:465"},
		{"upstream.imap.login", c.Upstream.IMAP.Login, LoginSeparator},
		{"upstream.imap.separator", c.Upstream.IMAP.Separator, "%"},
		{"upstream.smtp.separator default", c.Upstream.SMTP.Separator, "*"},
		{"upstream.ldap.address", c.Upstream.LDAP.Address, "[fd00::10]:636"},
		{"upstream.ldap.authz", c.Upstream.LDAP.Authz, AuthzService},
		{"directory.ldap.name_attribute default", c.Directory.LDAP.NameAttribute, "uid"},
		{"directory.cache_ttl", c.Directory.CacheTTL.Std(), 30 * time.Second},
		{"limits.idle_timeout", c.Limits.IdleTimeout.Std(), 24 * time.Hour},
		{"limits.max_message_size", c.Limits.MaxMessageSize, Size(25 << 20)},
		{"portal.session_key_file derived", c.Portal.SessionKeyFile, "/var/lib/legate/portal.key"},
		{"portal.oidc.mfa_amr default", len(c.Portal.OIDC.MFAAMR), 5},
		{"log.level", c.Log.SlogLevel(), slog.LevelDebug},
		{"tls enabled", c.TLS.Enabled(), true},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	p := c.PolicyConfig()
	if p.RequireTLS != true || p.RevokeOnPasswordChange != false || p.ExpireUnusedAfter != 90*24*time.Hour {
		t.Errorf("PolicyConfig: got require_tls %v revoke %v expire %v, want true false 2160h",
			p.RequireTLS, p.RevokeOnPasswordChange, p.ExpireUnusedAfter)
	}
	if !slices.Equal(p.AdminGroups, []string{"cn=admins,ou=groups,dc=example,dc=com"}) {
		t.Errorf("AdminGroups: got %q", p.AdminGroups)
	}
	if !slices.Equal(p.Admins, []string{"root"}) || !slices.Equal(p.BlockedUsers, []string{"mallory"}) {
		t.Errorf("Admins %q BlockedUsers %q, want [root] [mallory]", p.Admins, p.BlockedUsers)
	}
	if !slices.Equal(p.Protocols, []string{"imap", "smtp"}) {
		t.Errorf("Protocols: got %q, want [imap smtp]", p.Protocols)
	}
	if got := p.UserProtocols["scanner@example.com"]; !slices.Equal(got, []string{"smtp"}) {
		t.Errorf("UserProtocols[scanner@example.com]: got %q, want [smtp]", got)
	}
	if !slices.Contains(p.TrustedNetworks, netip.MustParsePrefix("fd00::/8")) {
		t.Errorf("TrustedNetworks: got %v, want fd00::/8 in it", p.TrustedNetworks)
	}
	// The conversion shares no memory with the config.
	p.Admins[0] = "changed"
	p.UserProtocols["printer"][0] = "imap"
	if c.Policy.Admins[0] != "root" || c.Policy.UserProtocols["printer"][0] != "smtp" {
		t.Error("PolicyConfig shares slices with Config")
	}
}

func TestStaticUsers(t *testing.T) {
	hash := directory.HashArgon2id("primary-password")
	src := minimal + `directory:
  static:
    users:
      - name: alice
        addresses: [alice@example.com]
        groups: [staff]
        password_hash: "` + hash + `"
      - name: bob
        admin: true
        disabled: true
`
	c, err := Parse("legate.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	users := c.StaticUsers()
	if len(users) != 2 {
		t.Fatalf("got %d users, want 2", len(users))
	}
	a, b := users[0], users[1]
	if a.Name != "alice" || !slices.Equal(a.Addresses, []string{"alice@example.com"}) ||
		!slices.Equal(a.Groups, []string{"staff"}) || a.PasswordHash != hash || a.Admin || a.Disabled {
		t.Errorf("alice: got %+v", a)
	}
	if b.Name != "bob" || !b.Admin || !b.Disabled || b.PasswordHash != "" {
		t.Errorf("bob: got %+v", b)
	}
	dir, err := directory.NewStatic(users)
	if err != nil {
		t.Fatalf("NewStatic: %v", err)
	}
	u, err := dir.Lookup(t.Context(), "alice@example.com")
	if err != nil || u.Name != "alice" {
		t.Fatalf("Lookup: got %v %v, want alice", u, err)
	}
	if err := dir.CheckPassword(t.Context(), u, "primary-password"); err != nil {
		t.Errorf("CheckPassword: %v", err)
	}
}

func TestBadArgon2Hash(t *testing.T) {
	src := minimal + `directory:
  static:
    users:
      - name: alice
        password_hash: "$argon2id$v=19$m=0,t=3,p=2$c2FsdA$a2V5"
`
	got := parseErrors(t, src)
	want := `legate.yaml:15: directory.static.users[0].password_hash: unusable hash: argon2id parameters out of range`
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want [%q]", got, want)
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(Log{Format: "json", Level: "warn"}.Handler(&buf))
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Errorf("got %q, want only the warning, as JSON", out)
	}
}
