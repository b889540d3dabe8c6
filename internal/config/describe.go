package config

import "fmt"

// UpstreamLogin says how Legate would pass a session of protocol (imap,
// smtp, ldap) for user name on to its upstream, for `legate explain`. It
// names no secret.
func (c *Config) UpstreamLogin(protocol, name string, addresses []string) string {
	switch protocol {
	case "imap":
		return "upstream.imap: " + c.Upstream.IMAP.LoginDescription(name, addresses)
	case "smtp":
		return "upstream.smtp: " + c.Upstream.SMTP.LoginDescription(name, addresses)
	case "ldap":
		u := c.Upstream.LDAP
		if !u.Configured() {
			return "upstream.ldap: no upstream configured"
		}
		if u.Authz == AuthzService {
			return fmt.Sprintf("upstream.ldap: searches at %s as %s, confined to %v (authz: service)", u.Address, u.BindDN, u.SearchBases)
		}
		return fmt.Sprintf("upstream.ldap: operations at %s as %s with proxied authorization for %s's entry (RFC 4370)", u.Address, u.BindDN, name)
	}
	return ""
}
