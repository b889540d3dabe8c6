package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimal is a valid file that every case below extends or breaks.
const minimal = `listen:
  imap: 127.0.0.1:10143
upstream:
  imap:
    address: 127.0.0.1:143
    tls: none
    master_user: legate
    master_password_file: imap.secret
policy:
  allow_plaintext_loopback: true
`

func parseErrors(t *testing.T, src string) []string {
	t.Helper()
	c, err := Parse("legate.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded (config %+v), want an error", c.Listen)
	}
	if c != nil {
		t.Errorf("Parse returned a config with the error")
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T %q is not config.Errors", err, err)
	}
	return strings.Split(err.Error(), "\n")
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every line of the error, in order
	}{
		{
			name: "unknown key",
			src:  "listen:\n  imapz: 127.0.0.1:1\n",
			want: []string{`legate.yaml:2: unknown key "listen.imapz" (did you mean "listen.imap"?)`},
		},
		{
			name: "unknown top-level key",
			src:  minimal + "bogus: 1\n",
			want: []string{`legate.yaml:11: unknown key "bogus"`},
		},
		{
			name: "wrong type int",
			src:  minimal + "limits:\n  max_connections: \"many\"\n",
			want: []string{`legate.yaml:12: limits.max_connections: want an integer, got "many"`},
		},
		{
			name: "wrong type bool",
			src:  minimal + "  require_tls: maybe\n",
			want: []string{`legate.yaml:11: policy.require_tls: want true or false, got "maybe"`},
		},
		{
			name: "list where a mapping belongs",
			src:  minimal + "limits: [1, 2]\n",
			want: []string{`legate.yaml:11: limits: want a mapping, got a list`},
		},
		{
			name: "bad CIDR",
			src:  minimal + "  trusted_networks:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n",
			want: []string{`legate.yaml:13: policy.trusted_networks[1]: "10.0.0.0/33" is not a CIDR (prefix length out of range)`},
		},
		{
			name: "CIDR with host bits",
			src:  minimal + "  trusted_networks: [\"fd00::1/8\"]\n",
			want: []string{`legate.yaml:11: policy.trusted_networks[0]: "fd00::1/8" has host bits set; did you mean "fd00::/8"?`},
		},
		{
			name: "bad duration",
			src:  minimal + "throttle:\n  window: 10 minutes\n",
			want: []string{`legate.yaml:12: throttle.window: "10 minutes" is not a duration (use e.g. 30s, 10m, 12h, 90d)`},
		},
		{
			name: "duration without unit",
			src:  minimal + "directory:\n  cache_ttl: 60\n",
			want: []string{`legate.yaml:12: directory.cache_ttl: "60" is not a duration (use e.g. 30s, 10m, 12h, 90d)`},
		},
		{
			name: "bad enum",
			src:  strings.Replace(minimal, "tls: none", "tls: sometimes", 1),
			want: []string{`legate.yaml:6: upstream.imap.tls: "sometimes" is not one of none, starttls, implicit`},
		},
		{
			name: "bad protocol",
			src:  minimal + "  protocols: [imap, pop3]\n",
			want: []string{`legate.yaml:11: policy.protocols[1]: "pop3" is not a protocol (imap, smtp, ldap)`},
		},
		{
			name: "missing required key",
			src:  strings.Replace(minimal, "    master_user: legate\n", "", 1),
			want: []string{`legate.yaml:4: upstream.imap.master_user: missing; required as the service account the upstream trusts`},
		},
		{
			name: "ldap directory needs upstream, base_dn and %s",
			src: minimal + `directory:
  type: ldap
  ldap:
    user_filter: "(uid=*)"
`,
			want: []string{
				`legate.yaml:12: directory.type: ldap needs upstream.ldap (the directory is read over its connection)`,
				`legate.yaml:13: directory.ldap.base_dn: missing; required with directory.type: ldap`,
				`legate.yaml:14: directory.ldap.user_filter: "(uid=*)" must contain %s exactly once (where the login name goes)`,
			},
		},
		{
			name: "ldap allow_writes with authz service",
			src: strings.Replace(minimal, "upstream:\n", `upstream:
  ldap:
    address: 127.0.0.1:389
    tls: none
    bind_dn: cn=legate,dc=example,dc=com
    bind_password_file: ldap.secret
    authz: service
    search_bases: ["dc=example,dc=com"]
    allow_writes: true
`, 1),
			want: []string{`legate.yaml:11: upstream.ldap.allow_writes: must be false with authz: service (writes would run with the service account's rights for every user)`},
		},
		{
			name: "static user duplicate and hash",
			src: minimal + `directory:
  static:
    users:
      - name: alice
      - name: Alice
        password_hash: hunter2
      - addresses: [x@example.com]
`,
			want: []string{
				`legate.yaml:15: directory.static.users[1].name: user "alice" is listed twice (first as users[0])`,
				`legate.yaml:16: directory.static.users[1].password_hash: must be an argon2id ($argon2id$...) or bcrypt ($2b$...) hash, not a password`,
				`legate.yaml:17: directory.static.users[2].name: missing; every user needs a name`,
			},
		},
		{
			name: "plaintext listener nobody could use",
			src:  strings.Replace(minimal, "  allow_plaintext_loopback: true\n", "  require_tls: true\n", 1),
			want: []string{`legate.yaml:2: listen.imap: no one could log in here: policy.require_tls is true but STARTTLS needs tls.cert_file and tls.key_file; set them, or for a loopback try-out set policy.allow_plaintext_loopback: true`},
		},
		{
			name: "half a certificate",
			src:  minimal + "tls:\n  cert_file: tls.crt\n",
			want: []string{`legate.yaml:11: tls.key_file: missing; required with tls.cert_file`},
		},
		{
			name: "listener without upstream",
			src:  strings.Replace(minimal, "listen:\n", "listen:\n  ldaps: 127.0.0.1:10636\n", 1),
			want: []string{
				`legate.yaml:2: listen.ldaps: implicit TLS needs tls.cert_file and tls.key_file`,
				`legate.yaml:2: listen.ldaps: this listener needs upstream.ldap.address: there is no server to pass sessions on to`,
			},
		},
		{
			name: "duplicate key",
			src:  minimal + "limits:\n  window: 1s\nlimits: {}\n",
			want: []string{
				`legate.yaml:12: unknown key "limits.window"`,
				`legate.yaml:13: limits: key given twice (first on line 11)`,
			},
		},
		{
			name: "YAML syntax error",
			src:  "listen:\n  imap: [\n",
			want: []string{`legate.yaml:2: invalid YAML: did not find expected node content`},
		},
		{
			name: "two documents",
			src:  minimal + "---\nlisten: {}\n",
			want: []string{`legate.yaml:11: invalid YAML: only one document is allowed`},
		},
		{
			name: "bad address",
			src:  strings.Replace(minimal, "127.0.0.1:143", "mail.internal", 1),
			want: []string{`legate.yaml:5: upstream.imap.address: "mail.internal" is not host:port`},
		},
		{
			name: "DN split by flow list (SPEC example written literally)",
			src:  minimal + "directory:\n  ldap:\n    admin_groups: [cn=admins,ou=groups,dc=example,dc=com]\n",
			want: []string{`legate.yaml:13: directory.ldap.admin_groups: YAML split a DN at its commas into 4 items; quote each DN: ["cn=admins,ou=groups,dc=example,dc=com"]`},
		},
		{
			name: "admin socket given as host:port",
			src:  strings.Replace(minimal, "listen:\n", "listen:\n  admin: 127.0.0.1:9000\n", 1),
			want: []string{`legate.yaml:2: listen.admin: is a unix socket path (e.g. /run/legate/admin.sock), not host:port`},
		},
		{
			name: "inline secret",
			src:  strings.Replace(minimal, "master_password_file: imap.secret", "master_password: hunter2", 1),
			want: []string{
				`legate.yaml:4: upstream.imap.master_password_file: missing; required (the service password, read from a file)`,
				`legate.yaml:8: unknown key "upstream.imap.master_password" (secrets are never written inline: put it in a file and set "upstream.imap.master_password_file")`,
			},
		},
		{
			name: "tab indentation",
			src:  "listen:\n\timap: 127.0.0.1:1\n",
			want: []string{`legate.yaml:2: invalid YAML: found character that cannot start any token (indent with spaces: YAML does not allow tabs)`},
		},
		{
			name: "empty protocols",
			src:  minimal + "  protocols: []\n",
			want: []string{`legate.yaml:11: policy.protocols: is empty; to refuse every legacy login set policy.block_legacy_auth: true instead`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErrors(t, tt.src)
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestMultipleErrorsSortedByLine(t *testing.T) {
	src := `limits:
  max_connections: many
  idle_timeout: forever
listen:
  imapz: 1
policy:
  trusted_networks: [10.0.0.0/33, "fd00::/8", "2001:db8::/129"]
  protocols: [pop3]
`
	got := parseErrors(t, src)
	wantPrefixes := []string{
		"legate.yaml:2: limits.max_connections:",
		"legate.yaml:3: limits.idle_timeout:",
		"legate.yaml:5: unknown key \"listen.imapz\"",
		"legate.yaml:7: policy.trusted_networks[0]:",
		"legate.yaml:7: policy.trusted_networks[2]:",
		"legate.yaml:8: policy.protocols[0]:",
	}
	if len(got) != len(wantPrefixes) {
		t.Fatalf("got %d errors %q, want %d", len(got), got, len(wantPrefixes))
	}
	for i, w := range wantPrefixes {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("error %d: got %q, want prefix %q", i, got[i], w)
		}
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := Parse("x.yaml", []byte("limits:\n  window: 1s\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	if e.File != "x.yaml" || e.Line != 2 || e.Key != "limits.window" {
		t.Errorf("got File %q Line %d Key %q, want x.yaml 2 limits.window", e.File, e.Line, e.Key)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("legate.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"policy.require_tls", c.Policy.RequireTLS, true},
		{"policy.protocols", strings.Join(c.Policy.Protocols, ","), "imap,smtp,ldap"},
		{"policy.max_app_passwords_per_user", c.Policy.MaxAppPasswordsPerUser, 40},
		{"policy.revoke_on_password_change", c.Policy.RevokeOnPasswordChange, true},
		{"policy.enforce_sender", c.Policy.EnforceSender, true},
		{"policy.allow_null_sender", c.Policy.AllowNullSender, false},
		{"directory.type", c.Directory.Type, "static"},
		{"directory.cache_ttl", c.Directory.CacheTTL.Std(), 60 * time.Second},
		{"limits.max_connections", c.Limits.MaxConnections, 10000},
		{"limits.max_connections_per_ip", c.Limits.MaxConnectionsPerIP, 50},
		{"limits.preauth_timeout", c.Limits.PreauthTimeout.Std(), 60 * time.Second},
		{"limits.idle_timeout", c.Limits.IdleTimeout.Std(), 30 * time.Minute},
		{"limits.shutdown_grace", c.Limits.ShutdownGrace.Std(), 30 * time.Second},
		{"limits.max_line_length", c.Limits.MaxLineLength, Size(8192)},
		{"limits.max_literal_size", c.Limits.MaxLiteralSize, Size(8192)},
		{"limits.max_message_size", c.Limits.MaxMessageSize, Size(50_000_000)},
		{"limits.max_recipients", c.Limits.MaxRecipients, 100},
		{"limits.max_pdu_size", c.Limits.MaxPDUSize, Size(1 << 20)},
		{"limits.dial_timeout", c.Limits.DialTimeout.Std(), 10 * time.Second},
		{"throttle.max_failures_per_ip", c.Throttle.MaxFailuresPerIP, 20},
		{"throttle.max_failures_per_user", c.Throttle.MaxFailuresPerUser, 10},
		{"throttle.window", c.Throttle.Window.Std(), 10 * time.Minute},
		{"upstream.imap.login", c.Upstream.IMAP.Login, "authzid"},
		{"upstream.imap.separator", c.Upstream.IMAP.Separator, "*"},
		{"upstream.smtp.login", c.Upstream.SMTP.Login, "authzid"},
		{"upstream.ldap.pool_size", c.Upstream.LDAP.PoolSize, 8},
		{"upstream.ldap.authz", c.Upstream.LDAP.Authz, "proxied"},
		{"upstream.imap.insecure_skip_verify", c.Upstream.IMAP.InsecureSkipVerify, false},
		{"portal.reauth_after", c.Portal.ReauthAfter.Std(), 10 * time.Minute},
		{"portal.oidc.username_claim", c.Portal.OIDC.UsernameClaim, "preferred_username"},
		{"portal.oidc.require_mfa", c.Portal.OIDC.RequireMFA, true},
		{"portal.oidc.mfa_amr", strings.Join(c.Portal.OIDC.MFAAMR, ","), "mfa,otp,hwk,swk,sms"},
		{"log.format", c.Log.Format, "text"},
		{"log.level", c.Log.Level, "info"},
		{"storage.backend", c.Storage.Backend, "bolt"},
		{"Default().policy.require_tls", d.Policy.RequireTLS, true},
		{"Default() validates", d.Validate() == nil, true},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "legate.yaml")
	src := minimal + "storage:\n  path: db/legate.db\nlisten_admin_placeholder: 0\n"
	src = strings.Replace(src, "listen_admin_placeholder: 0\n", "", 1)
	src = strings.Replace(src, "listen:\n", "listen:\n  admin: run/admin.sock\n", 1)
	if err := os.WriteFile(name, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ key, got, want string }{
		{"storage.path", c.Storage.Path, filepath.Join(dir, "db/legate.db")},
		{"storage.key_file", c.Storage.KeyFile, filepath.Join(dir, "db/hmac.key")},
		{"portal.session_key_file", c.Portal.SessionKeyFile, filepath.Join(dir, "db/portal.key")},
		{"listen.admin", c.Listen.Admin, filepath.Join(dir, "run/admin.sock")},
		{"upstream.imap.master_password_file", c.Upstream.IMAP.MasterPasswordFile, filepath.Join(dir, "imap.secret")},
	} {
		if x.got != x.want {
			t.Errorf("%s: got %q, want %q", x.key, x.got, x.want)
		}
	}
	if c.File() != name {
		t.Errorf("File(): got %q, want %q", c.File(), name)
	}
}

func TestIPv6AndBareAddresses(t *testing.T) {
	src := minimal + `  trusted_networks: [10.0.0.0/8, "fd00::/8", "2001:db8:1::/48", 192.0.2.7, "::1"]
`
	c, err := Parse("legate.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("::1/128"),
	}
	if !slices.Equal(c.Policy.TrustedNetworks, want) {
		t.Errorf("trusted_networks: got %v, want %v", c.Policy.TrustedNetworks, want)
	}
	pc := c.PolicyConfig()
	if !slices.Equal(pc.TrustedNetworks, want) {
		t.Errorf("PolicyConfig().TrustedNetworks: got %v, want %v", pc.TrustedNetworks, want)
	}
}

func TestNullKeepsDefault(t *testing.T) {
	c, err := Parse("legate.yaml", []byte(minimal+"limits:\n  max_connections:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxConnections != 10000 {
		t.Errorf("max_connections: got %d, want default 10000", c.Limits.MaxConnections)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	c, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Throttle.MaxFailuresPerIP != 20 {
		t.Errorf("max_failures_per_ip: got %d, want 20", c.Throttle.MaxFailuresPerIP)
	}
}

func TestAliasBomb(t *testing.T) {
	items := strings.TrimSuffix(strings.Repeat("a, ", 1000), ", ")
	refs := strings.TrimSuffix(strings.Repeat("*u, ", 1000), ", ")
	src := "x: &a [" + items + "]\ny: &u {name: n, addresses: *a, groups: *a}\n" +
		"directory:\n  static:\n    users: [" + refs + "]\n"
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(src))
	if err == nil {
		t.Fatal("alias bomb parsed without error")
	}
	if !strings.Contains(err.Error(), "bomb.yaml: document too large or too deeply aliased") {
		t.Errorf("got %.300q..., want the size-limit error", err)
	}
	if d := time.Since(start); d > 30*time.Second { // generous: CI machines are busy; an unbounded expansion takes hours
		t.Errorf("alias bomb took %v, want bounded work", d)
	}
}

// TestUsernameAttribute: portal.oidc.username_attribute is name or mail,
// with a file:line error otherwise (docs/identity.md).
func TestUsernameAttribute(t *testing.T) {
	got := parseErrors(t, minimal+"portal:\n  oidc:\n    username_attribute: uid\n")
	want := `legate.yaml:13: portal.oidc.username_attribute: "uid" is not one of name, mail`
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want [%q]", got, want)
	}
	for _, v := range []string{"name", "mail"} {
		c, err := Parse("legate.yaml", []byte(minimal+"portal:\n  oidc:\n    username_attribute: "+v+"\n"))
		if err != nil || c.Portal.OIDC.UsernameAttribute != v {
			t.Errorf("username_attribute %s: %v", v, err)
		}
	}
	if c, err := Parse("legate.yaml", []byte(minimal)); err != nil || c.Portal.OIDC.UsernameAttribute != "name" {
		t.Errorf("default username_attribute: %v %v, want name", c, err)
	}
}

// TestAuthHTTPAndDecisionKeys: listen.auth_http is loopback or unix: only
// and needs its header and secret; listen.decision is not the admin socket.
func TestAuthHTTPAndDecisionKeys(t *testing.T) {
	with := func(listen string) string {
		return strings.Replace(minimal, "listen:\n", "listen:\n"+listen, 1)
	}
	got := strings.Join(parseErrors(t, with("  auth_http: 0.0.0.0:9143\n")), "\n")
	if !strings.Contains(got, "listen.auth_http: must be a loopback address") || !strings.Contains(got, "auth_http.secret_file: missing") {
		t.Errorf("public auth_http without a secret: got %q", got)
	}
	for _, ok := range []string{"127.0.0.1:9143", "'[::1]:9143'", "unix:/run/legate/auth.sock"} {
		c, err := Parse("legate.yaml", []byte(with("  auth_http: "+ok+"\n")+"auth_http:\n  header: X-Auth-Key\n  secret_file: /etc/x\n"))
		if err != nil || c.Listen.AuthHTTP != strings.Trim(ok, "'") {
			t.Errorf("auth_http %s: %v", ok, err)
		}
	}
	got = strings.Join(parseErrors(t, with("  admin: /run/a.sock\n  decision: /run/a.sock\n")), "\n")
	if !strings.Contains(got, "listen.decision: must not be the admin socket") {
		t.Errorf("decision = admin: got %q", got)
	}
}
