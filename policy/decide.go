package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// trace accumulates the steps of one decision. When off, nothing is
// formatted: the login hot path needs only the outcome and the rule.
type trace struct {
	on    bool
	steps []Step
}

func (t *trace) pass(r Rule, format string, args ...any) {
	if t.on {
		t.steps = append(t.steps, Step{Rule: r, Passed: true, Detail: fmt.Sprintf(format, args...)})
	}
}

func (t *trace) fail(o Outcome, r Rule, reason, format string, args ...any) Decision {
	if t.on {
		t.steps = append(t.steps, Step{Rule: r, Passed: false, Detail: fmt.Sprintf(format, args...)})
	}
	return Decision{Outcome: o, Rule: r, Reason: reason, Trace: t.steps}
}

// CredentialsAccepted reports whether credentials may be sent on a connection
// at all (docs/contract.md §3 step 1). Front-ends use it to decide what to advertise
// (IMAP LOGINDISABLED, SMTP AUTH only after STARTTLS, LDAP confidentialityRequired).
func (c *Config) CredentialsAccepted(tls bool, ip netip.Addr) bool {
	if tls || !c.RequireTLS {
		return true
	}
	return c.AllowPlaintextLoopback && ip.Unmap().IsLoopback()
}

// Precheck runs the steps that come before the secret is checked (TLS and
// throttling). When ok is false, d is the final decision and the secret must
// not be checked.
func Precheck(c *Config, in Input) (d Decision, ok bool) {
	t := trace{on: !in.NoTrace}
	return precheck(c, in, &t)
}

func precheck(c *Config, in Input, t *trace) (Decision, bool) {
	if !c.CredentialsAccepted(in.TLS, in.IP) {
		return t.fail(TLSRequired, RuleTLSRequired, "TLS required",
			"plaintext connection from %s and require_tls is on", in.IP), false
	}
	switch {
	case in.TLS:
		t.pass(RuleTLSRequired, "connection is TLS")
	case !c.RequireTLS:
		t.pass(RuleTLSRequired, "plaintext allowed (require_tls off)")
	default:
		t.pass(RuleTLSRequired, "plaintext allowed from loopback (allow_plaintext_loopback)")
	}
	if in.Throttled {
		return t.fail(Throttled, RuleThrottled, "too many failures, try later",
			"too many recent failures for this client or user; secret not checked"), false
	}
	t.pass(RuleThrottled, "not throttled")
	return Decision{}, true
}

// Decide makes the login decision of docs/contract.md §3. It is pure: the same input
// always gives the same decision.
func Decide(c *Config, in Input) Decision {
	t := trace{on: !in.NoTrace}
	if d, ok := precheck(c, in, &t); !ok {
		return d
	}
	cred := in.Credential
	if in.User == nil || cred == nil {
		detail := "secret matches no app password of the user"
		if in.User == nil {
			detail = "unknown user or wrong secret"
		}
		return t.fail(BadCredentials, RuleBadCredentials, "", "%s", detail)
	}
	if cred.Kind == Primary {
		if !InNetworks(in.IP, c.TrustedNetworks) {
			return t.fail(BadCredentials, RuleBadCredentials, "",
				"primary password offered from %s, outside trusted_networks", in.IP)
		}
		t.pass(RuleBadCredentials, "primary password from trusted network %s", in.IP)
	} else {
		t.pass(RuleBadCredentials, "app password %s (%q)", cred.ID, cred.Name)
	}
	u := in.User

	// Step 4: policy on the proven user.
	if r, ok := c.MayUseLegacyAuth(u); !ok {
		if r.Rule == RuleAdmin {
			t.pass(RuleLegacyBlocked, "legacy auth not blocked for %s", u.Name)
		}
		return t.fail(r.Outcome, r.Rule, r.Reason, "%s", r.Detail)
	}
	t.pass(RuleLegacyBlocked, "legacy auth not blocked for %s", u.Name)
	t.pass(RuleAdmin, "not an administrator")
	if u.Disabled {
		return t.fail(Refused, RuleDisabled, "account disabled", "user %s is disabled in the directory", u.Name)
	}
	t.pass(RuleDisabled, "account enabled")
	if c.Protocols != nil && !slices.Contains(c.Protocols, in.Protocol) {
		return t.fail(Refused, RuleProtocolOff, in.Protocol+" is disabled",
			"%s is not in policy.protocols %v", in.Protocol, c.Protocols)
	}
	if allowed, ok := lookupFold(c.UserProtocols, u.Name); ok && !slices.Contains(allowed, in.Protocol) {
		return t.fail(Refused, RuleUserProtocolOff, in.Protocol+" is disabled for this user",
			"policy.user_protocols allows %s only %v", u.Name, allowed)
	}
	t.pass(RuleProtocolOff, "%s enabled", in.Protocol)
	if cred.Kind == Primary {
		t.pass(RuleAllowPrimary, "allowed: primary password from trusted network")
		return Decision{Outcome: Allow, Rule: RuleAllowPrimary, Trace: t.steps}
	}
	if len(cred.Scope) > 0 && !slices.Contains(cred.Scope, in.Protocol) {
		return t.fail(Refused, RuleScope, "app password not valid for "+in.Protocol,
			"app password scope is %v", cred.Scope)
	}
	t.pass(RuleScope, "%s within app password scope", in.Protocol)
	if len(cred.Networks) > 0 && !InNetworks(in.IP, cred.Networks) {
		return t.fail(Refused, RuleNetwork, "app password not valid from this network",
			"%s is outside the app password's networks %v", in.IP, cred.Networks)
	}
	t.pass(RuleNetwork, "client %s allowed by app password networks", in.IP)
	if r, ok := c.CredentialStatus(cred, u.PasswordChanged, in.Now); !ok {
		return t.fail(r.Outcome, r.Rule, r.Reason, "%s", r.Detail)
	}
	t.pass(RuleExpired, "not expired")
	t.pass(RuleAllowAppPassword, "allowed")
	return Decision{Outcome: Allow, Rule: RuleAllowAppPassword, Trace: t.steps}
}

// UnusedExpired reports whether an app password last used at lastUsed (zero:
// never) and created at created is past expire_unused_after at now.
func (c *Config) UnusedExpired(created, lastUsed, now time.Time) bool {
	if c.ExpireUnusedAfter <= 0 {
		return false
	}
	if lastUsed.IsZero() {
		lastUsed = created
	}
	return now.Sub(lastUsed) >= c.ExpireUnusedAfter
}

// IsAdmin reports whether u counts as an administrator under c.
func (c *Config) IsAdmin(u *User) bool { _, ok := c.isAdmin(u); return ok }

func (c *Config) isAdmin(u *User) (string, bool) {
	if u.Admin {
		return fmt.Sprintf("user %s is marked admin in the directory", u.Name), true
	}
	if containsFold(c.Admins, u.Name) {
		return fmt.Sprintf("user %s is listed in policy.admins", u.Name), true
	}
	if g, ok := firstCommon(c.AdminGroups, u.Groups); ok {
		return fmt.Sprintf("user %s is in admin group %s", u.Name, g), true
	}
	return "", false
}

// InNetworks reports whether ip lies in one of nets. IPv4-mapped IPv6
// addresses (::ffff:10.1.2.3) match IPv4 prefixes.
func InNetworks(ip netip.Addr, nets []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	un := ip.Unmap()
	for _, n := range nets {
		if n.Contains(un) || n.Contains(ip) {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func lookupFold(m map[string][]string, key string) ([]string, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// firstCommon returns the first element of want found (case-insensitively) in have.
func firstCommon(want, have []string) (string, bool) {
	for _, w := range want {
		if containsFold(have, w) {
			return w, true
		}
	}
	return "", false
}
