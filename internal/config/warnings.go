package config

import (
	"fmt"
	"slices"
)

// Warnings lists settings that are valid but cannot work the way the
// operator most likely means (e.g. allow_plaintext_loopback on a listener
// no loopback client uses, with no TLS for anyone else). `legate check`
// prints them on stderr and still exits 0; serve logs them at start. Each
// names file:line and the key, like Validate's errors.
func (c *Config) Warnings() Errors {
	var ws Errors
	warn := func(key, format string, args ...any) {
		ws = append(ws, &Error{File: c.file, Line: c.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	l, p := c.Listen, c.Policy
	plain := []struct{ key, addr, proto string }{
		{"listen.imap", l.IMAP, "imap"}, {"listen.submission", l.Submission, "smtp"}, {"listen.ldap", l.LDAP, "ldap"},
	}
	if !c.TLS.Enabled() && p.RequireTLS && p.AllowPlaintextLoopback {
		for _, x := range plain {
			if x.addr != "" && !isLoopback(x.addr) {
				warn(x.key, "%s is not a loopback address and there is no tls.cert_file: with policy.require_tls and allow_plaintext_loopback only clients on this machine can log in here; remote clients are always refused (set tls.cert_file and tls.key_file for them)", x.addr)
			}
		}
	}
	if !p.RequireTLS && c.set("policy.allow_plaintext_loopback") && p.AllowPlaintextLoopback {
		warn("policy.allow_plaintext_loopback", "has no effect: policy.require_tls is false, so plaintext is allowed from everywhere")
	}
	if !p.RequireTLS {
		for _, x := range plain {
			if x.addr != "" && !isLoopback(x.addr) {
				warn(x.key, "policy.require_tls is false: passwords from %s cross the network in clear text", x.addr)
			}
		}
	}
	for i, n := range p.TrustedNetworks {
		if n.Bits() == 0 {
			warn(fmt.Sprintf("policy.trusted_networks[%d]", i), "%s trusts every address: anyone on the internet may log in with the primary password", n)
		}
	}
	if c.set("policy.protocols") {
		all := []struct{ key, addr, proto string }{
			plain[0], plain[1], plain[2],
			{"listen.imaps", l.IMAPS, "imap"}, {"listen.submissions", l.Submissions, "smtp"}, {"listen.ldaps", l.LDAPS, "ldap"},
		}
		for _, x := range all {
			if x.addr != "" && !slices.Contains(p.Protocols, x.proto) {
				warn(x.key, "is set, but %s is not in policy.protocols: every login on it is refused", x.proto)
			}
		}
	}
	return ws.sorted()
}

// Line returns the line of key in the file (or of its nearest ancestor
// given there); 0 when neither was given. For callers that report a
// problem with a key found outside this package (e.g. listen.admin's path).
func (c *Config) Line(key string) int { return c.line(key) }
