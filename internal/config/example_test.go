package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const examplePath = "../../config.example.yaml"

// specKeys are the key paths of docs/contract.md §8, the contract outside tests write.
var specKeys = []string{
	"listen", "listen.imap", "listen.imaps", "listen.submission", "listen.submissions",
	"listen.ldap", "listen.ldaps", "listen.http", "listen.portal", "listen.admin",
	"tls", "tls.cert_file", "tls.key_file",
	"storage", "storage.path", "storage.key_file",
	"upstream", "upstream.imap", "upstream.imap.address", "upstream.imap.tls",
	"upstream.imap.ca_file", "upstream.imap.server_name", "upstream.imap.master_user",
	"upstream.imap.master_password_file", "upstream.imap.login", "upstream.imap.separator",
	"upstream.smtp", "upstream.smtp.address", "upstream.smtp.tls", "upstream.smtp.master_user",
	"upstream.smtp.master_password_file",
	"upstream.ldap", "upstream.ldap.address", "upstream.ldap.tls", "upstream.ldap.bind_dn",
	"upstream.ldap.bind_password_file", "upstream.ldap.allow_writes", "upstream.ldap.pool_size",
	"upstream.ldap.authz", "upstream.ldap.search_bases", "upstream.ldap.attributes",
	"directory", "directory.type", "directory.cache_ttl", "directory.static",
	"directory.static.users", "directory.static.users[].name", "directory.static.users[].addresses",
	"directory.static.users[].groups", "directory.static.users[].admin",
	"directory.static.users[].disabled", "directory.static.users[].password_hash",
	"directory.ldap", "directory.ldap.base_dn", "directory.ldap.user_filter",
	"directory.ldap.name_attribute", "directory.ldap.mail_attributes", "directory.ldap.group_attribute",
	"directory.ldap.admin_groups", "directory.ldap.disabled_filter",
	"directory.ldap.password_changed_attribute",
	"policy", "policy.require_tls", "policy.allow_plaintext_loopback", "policy.trusted_networks",
	"policy.block_legacy_auth", "policy.blocked_users", "policy.blocked_groups", "policy.admins",
	"policy.protocols", "policy.user_protocols", "policy.max_app_passwords_per_user",
	"policy.revoke_on_password_change", "policy.expire_unused_after", "policy.enforce_sender",
	"portal", "portal.external_url", "portal.session_key_file", "portal.reauth_after",
	"portal.oidc", "portal.oidc.issuer", "portal.oidc.client_id", "portal.oidc.client_secret_file",
	"portal.oidc.username_claim", "portal.oidc.require_mfa", "portal.oidc.mfa_amr", "portal.oidc.mfa_acr",
	"portal.client_settings", "portal.client_settings.imap", "portal.client_settings.imap.host",
	"portal.client_settings.imap.port", "portal.client_settings.imap.security",
	"portal.client_settings.smtp", "portal.client_settings.ldap",
	"limits", "limits.max_connections", "limits.max_connections_per_ip", "limits.preauth_timeout",
	"limits.idle_timeout", "limits.shutdown_grace",
	"throttle", "throttle.max_failures_per_ip", "throttle.max_failures_per_user", "throttle.window",
}

// schemaKeys lists every key path Config accepts; list items are "[]".
func schemaKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok {
			continue
		}
		key := join(prefix, tag)
		out = append(out, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem() != prefixType {
			out = append(out, schemaKeys(ft.Elem(), key+"[]")...)
		} else if ft.Kind() == reflect.Struct && ft != prefixType {
			out = append(out, schemaKeys(ft, key)...)
		}
	}
	return out
}

// commentedKey matches a commented-out key line: "  # key: value".
var commentedKey = regexp.MustCompile(`(?m)^(\s*)# ?((?:- )?[a-z0-9_]+:(?:\s.*)?)$`)

func uncomment(src string) string { return commentedKey.ReplaceAllString(src, "$1$2") }

// nodeKeys lists the key paths present in a YAML tree; list items are "[]".
func nodeKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			nodeKeys(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := join(prefix, n.Content[i].Value)
			out[key] = true
			nodeKeys(n.Content[i+1], key, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			nodeKeys(c, prefix+"[]", out)
		}
	}
}

func TestExampleConfigValid(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate again: %v", err)
	}
	if c.Listen.IMAP != "127.0.0.1:10143" || !c.Policy.RequireTLS || !c.Policy.AllowPlaintextLoopback {
		t.Errorf("got imap %q require_tls %v allow_plaintext_loopback %v, want a loopback try-out",
			c.Listen.IMAP, c.Policy.RequireTLS, c.Policy.AllowPlaintextLoopback)
	}
	if got := len(c.StaticUsers()); got != 2 {
		t.Errorf("static users: got %d, want 2", got)
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	full := uncomment(string(data))

	// With every commented key switched on, the file must still decode:
	// no unknown key, no wrong type (validation may object to combinations).
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(full), &root); err != nil {
		t.Fatalf("uncommented example is not YAML: %v\n%s", err, full)
	}
	d := &decoder{file: "uncommented", lines: map[string]int{}, bad: map[string]bool{}}
	d.decode(root.Content[0], "", reflect.ValueOf(Default()).Elem())
	if len(d.errs) > 0 {
		t.Errorf("uncommented example does not decode:\n%v", d.errs.sorted())
	}

	present := map[string]bool{}
	nodeKeys(&root, "", present)
	schema := schemaKeys(reflect.TypeFor[Config](), "")
	for _, k := range specKeys {
		if !slices.Contains(schema, k) {
			t.Errorf("docs/contract.md §8 key %s is not accepted by Config", k)
		}
	}
	for _, k := range schema {
		if !present[k] {
			t.Errorf("key %s is not documented in config.example.yaml", k)
		}
	}

	// Every key line carries a comment saying what it does.
	for i, line := range strings.Split(full, "\n") {
		trim := strings.TrimSpace(line)
		if trim == "" || strings.HasPrefix(trim, "#") {
			continue
		}
		if !strings.Contains(line, " # ") && !strings.HasSuffix(trim, ":") {
			t.Errorf("config.example.yaml:%d: key without a comment: %s", i+1, trim)
		}
	}
}
