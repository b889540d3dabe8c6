package config

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/policy"
)

func (v *validator) upstreams() {
	c := v.c
	v.upstreamMail("upstream.imap", c.Upstream.IMAP)
	v.upstreamMail("upstream.smtp", c.Upstream.SMTP)
	v.upstreamLDAP()

	l := c.Listen
	for _, x := range []struct {
		key, addr, up string
		ok            bool
	}{
		{"listen.imap", l.IMAP, "upstream.imap", c.Upstream.IMAP.Configured()},
		{"listen.imaps", l.IMAPS, "upstream.imap", c.Upstream.IMAP.Configured()},
		{"listen.submission", l.Submission, "upstream.smtp", c.Upstream.SMTP.Configured()},
		{"listen.submissions", l.Submissions, "upstream.smtp", c.Upstream.SMTP.Configured()},
		{"listen.ldap", l.LDAP, "upstream.ldap", c.Upstream.LDAP.Configured()},
		{"listen.ldaps", l.LDAPS, "upstream.ldap", c.Upstream.LDAP.Configured()},
	} {
		if x.addr != "" && !x.ok {
			v.add(x.key, "this listener needs %s.address: there is no server to pass sessions on to", x.up)
		}
	}
}

// upstreamConn checks the connection keys shared by every upstream; it
// returns false when the upstream is not configured.
func (v *validator) upstreamConn(key, addr, mode, caFile, serverName string, insecure bool) bool {
	if addr == "" {
		if v.c.anySet(key) {
			v.add(key+".address", "missing; the other %s keys are set", key)
		}
		return false
	}
	if err := hostPort(addr, true, 1); err != nil {
		v.add(key+".address", "%v", err)
	}
	if mode == "" {
		v.add(key+".tls", "missing; say none, starttls or implicit")
	} else {
		v.oneOf(key+".tls", mode, TLSNone, TLSStartTLS, TLSImplicit)
	}
	if mode == TLSNone && (caFile != "" || serverName != "" || insecure) {
		v.add(key+".tls", "is none, so ca_file, server_name and insecure_skip_verify have no effect; remove them or enable TLS")
	}
	if insecure && caFile != "" {
		v.add(key+".insecure_skip_verify", "contradicts %s.ca_file: choose one", key)
	}
	return true
}

func (v *validator) upstreamMail(key string, u UpstreamMail) {
	if !v.upstreamConn(key, u.Address, u.TLS, u.CAFile, u.ServerName, u.InsecureSkipVerify) {
		return
	}
	v.oneOf(key+".auth", u.Auth, AuthMaster, AuthOAuth2)
	if u.Auth == AuthOAuth2 {
		v.upstreamOAuth2(key, u)
		return
	}
	if v.c.anySet(key + ".oauth2") {
		v.add(key+".oauth2", "is set but %s.auth is %q; say auth: oauth2", key, u.Auth)
	}
	v.required(key+".master_user", u.MasterUser, "as the service account the upstream trusts")
	v.required(key+".master_password_file", u.MasterPasswordFile, "(the service password, read from a file)")
	v.oneOf(key+".login", u.Login, LoginAuthzid, LoginSeparator)
	if u.Login == LoginSeparator {
		v.required(key+".separator", u.Separator, "with login: separator")
	}
}

func (v *validator) upstreamLDAP() {
	const key = "upstream.ldap"
	u := v.c.Upstream.LDAP
	if !v.upstreamConn(key, u.Address, u.TLS, u.CAFile, u.ServerName, u.InsecureSkipVerify) {
		return
	}
	v.required(key+".bind_dn", u.BindDN, "as the service account")
	v.required(key+".bind_password_file", u.BindPasswordFile, "(the service password, read from a file)")
	v.atLeast(key+".pool_size", int64(u.PoolSize), 1)
	if u.PoolSize > 1024 {
		v.add(key+".pool_size", "must be at most 1024, got %d", u.PoolSize)
	}
	v.oneOf(key+".authz", u.Authz, AuthzProxied, AuthzService)
	if u.Authz == AuthzService && len(u.SearchBases) == 0 {
		v.add(key+".search_bases", "missing; authz: service must be confined to search bases")
	}
	if u.Authz == AuthzService && u.AllowWrites {
		// Every user would write with the service account's rights (#13).
		v.add(key+".allow_writes", "must be false with authz: service (writes would run with the service account's rights for every user)")
	}
	v.nonEmptyItems(key+".search_bases", u.SearchBases)
	v.nonEmptyItems(key+".attributes", u.Attributes)
}

func (v *validator) nonEmptyItems(key string, items []string) {
	for i, s := range items {
		if strings.TrimSpace(s) == "" {
			v.add(fmt.Sprintf("%s[%d]", key, i), "must not be empty")
		}
	}
}

func (v *validator) directory() {
	d := v.c.Directory
	v.oneOf("directory.type", d.Type, "static", "ldap")
	v.staticUsers()
	if d.Type != "ldap" {
		return
	}
	if !v.c.Upstream.LDAP.Configured() {
		v.add("directory.type", "ldap needs upstream.ldap (the directory is read over its connection)")
	}
	l := d.LDAP
	v.required("directory.ldap.base_dn", l.BaseDN, "with directory.type: ldap")
	v.required("directory.ldap.user_filter", l.UserFilter, "with directory.type: ldap, e.g. \"(uid=%s)\"")
	if l.UserFilter != "" && strings.Count(l.UserFilter, "%s") != 1 {
		v.add("directory.ldap.user_filter", "%q must contain %%s exactly once (where the login name goes)", l.UserFilter)
	}
	v.required("directory.ldap.name_attribute", l.NameAttribute, "with directory.type: ldap")
	v.nonEmptyItems("directory.ldap.mail_attributes", l.MailAttributes)
	v.nonEmptyItems("directory.ldap.admin_groups", l.AdminGroups)
}

func (v *validator) staticUsers() {
	seen := make(map[string]int)
	for i, u := range v.c.Directory.Static.Users {
		key := fmt.Sprintf("directory.static.users[%d]", i)
		name := strings.ToLower(strings.TrimSpace(u.Name))
		if name == "" {
			v.add(key+".name", "missing; every user needs a name")
		} else if first, dup := seen[name]; dup {
			v.add(key+".name", "user %q is listed twice (first as users[%d])", name, first)
		} else {
			seen[name] = i
		}
		v.nonEmptyItems(key+".addresses", u.Addresses)
		v.nonEmptyItems(key+".groups", u.Groups)
		if u.PasswordHash == "" {
			continue
		}
		if !strings.HasPrefix(u.PasswordHash, "$argon2id$") && !strings.HasPrefix(u.PasswordHash, "$2") {
			v.add(key+".password_hash", "must be an argon2id ($argon2id$...) or bcrypt ($2b$...) hash, not a password")
			continue
		}
		if _, err := directory.NewStatic([]directory.StaticUser{{Name: "x", PasswordHash: u.PasswordHash}}); err != nil {
			msg := err.Error()
			if _, after, ok := strings.Cut(msg, "user x: "); ok {
				msg = after
			}
			v.add(key+".password_hash", "unusable hash: %s", msg)
		}
	}
}

func (v *validator) protocols(key string, ps []string) {
	seen := make(map[string]bool)
	for i, p := range ps {
		k := fmt.Sprintf("%s[%d]", key, i)
		if !policy.ValidProtocol(p) {
			v.add(k, "%q is not a protocol (imap, smtp, ldap)", p)
		} else if seen[p] {
			v.add(k, "%q is listed twice", p)
		}
		seen[p] = true
	}
}

func (v *validator) policy() {
	p := v.c.Policy
	if len(p.Protocols) == 0 {
		v.add("policy.protocols", "is empty; to refuse every legacy login set policy.block_legacy_auth: true instead")
	}
	v.protocols("policy.protocols", p.Protocols)
	for _, user := range slices.Sorted(maps.Keys(p.UserProtocols)) {
		ps := p.UserProtocols[user]
		if strings.TrimSpace(user) == "" {
			v.add("policy.user_protocols", "a user name must not be empty")
		}
		v.protocols("policy.user_protocols."+user, ps)
	}
	v.nonEmptyItems("policy.blocked_users", p.BlockedUsers)
	v.nonEmptyItems("policy.blocked_groups", p.BlockedGroups)
	v.nonEmptyItems("policy.admins", p.Admins)
	v.atLeast("policy.max_app_passwords_per_user", int64(p.MaxAppPasswordsPerUser), 1)
	if p.MaxAppPasswordsPerUser > 10000 {
		v.add("policy.max_app_passwords_per_user", "must be at most 10000, got %d", p.MaxAppPasswordsPerUser)
	}
	for i, n := range p.TrustedNetworks {
		if !n.IsValid() {
			v.add(fmt.Sprintf("policy.trusted_networks[%d]", i), "is not a CIDR")
		}
	}
}

// checkURL validates an absolute http(s) URL; plain http only for loopback.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute https:// URL", s)
	}
	if u.Scheme == "http" {
		h := u.Hostname()
		a, err := netip.ParseAddr(h)
		if h != "localhost" && (err != nil || !a.IsLoopback()) {
			return fmt.Errorf("%q must use https:// (http:// only for loopback)", s)
		}
	}
	return nil
}

func (v *validator) portal() {
	p := v.c.Portal
	on := v.c.Listen.Portal != ""
	if on {
		v.required("portal.external_url", p.ExternalURL, "with listen.portal (the address users open)")
		v.required("portal.oidc.issuer", p.OIDC.Issuer, "with listen.portal (users sign in there)")
		v.required("portal.oidc.client_id", p.OIDC.ClientID, "with listen.portal")
		v.required("portal.oidc.client_secret_file", p.OIDC.ClientSecretFile, "with listen.portal")
	}
	if p.ExternalURL != "" {
		if err := checkURL(p.ExternalURL); err != nil {
			v.add("portal.external_url", "%v", err)
		}
	}
	if p.OIDC.Issuer != "" {
		if err := checkURL(p.OIDC.Issuer); err != nil {
			v.add("portal.oidc.issuer", "%v", err)
		}
	}
	v.required("portal.oidc.username_claim", p.OIDC.UsernameClaim, "as the ID-token claim that holds the user name")
	v.oneOf("portal.oidc.username_attribute", p.OIDC.UsernameAttribute, "name", "mail")
	if p.OIDC.RequireMFA && len(p.OIDC.MFAAMR) == 0 && p.OIDC.MFAACR == "" {
		v.add("portal.oidc.mfa_amr", "is empty and mfa_acr is not set, so require_mfa could never be met")
	}
	v.nonEmptyItems("portal.oidc.mfa_amr", p.OIDC.MFAAMR)
	if p.ReauthAfter <= 0 {
		v.add("portal.reauth_after", "must be more than zero")
	}
	for _, x := range []struct {
		key string
		s   ClientSetting
	}{
		{"portal.client_settings.imap", p.ClientSettings.IMAP},
		{"portal.client_settings.smtp", p.ClientSettings.SMTP},
		{"portal.client_settings.ldap", p.ClientSettings.LDAP},
	} {
		if x.s.Port < 0 || x.s.Port > 65535 {
			v.add(x.key+".port", "must be a port number from 1 to 65535, got %d", x.s.Port)
		}
		if x.s.Security != "" {
			v.oneOf(x.key+".security", x.s.Security, "tls", "starttls", "none")
		}
		if x.s.Host != "" && !validHostname(x.s.Host) {
			if _, err := netip.ParseAddr(x.s.Host); err != nil {
				v.add(x.key+".host", "%q is not a host name or IP address", x.s.Host)
			}
		}
	}
}
