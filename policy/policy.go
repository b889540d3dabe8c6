// Package policy decides whether a legacy-protocol login is allowed.
//
// The decision is a pure function of the request, the proven user, the matched
// credential, the configuration and the clock (Decide). It performs no I/O:
// the login service (internal/auth) verifies the secret and looks the user up,
// then hands the facts here. Every decision carries the rule that decided it
// and a step-by-step trace, which `legate explain` prints and the audit log keeps.
//
// The order of the rules follows the product contract (docs/contract.md §3):
//  1. TLS required on plaintext connections (loopback optionally exempt);
//  2. throttled clients are refused before the secret is checked;
//  3. the secret must match an app password of the user, or the primary password
//     from a trusted network;
//  4. policy on the proven user: legacy auth blocked, administrator, disabled,
//     protocol off (globally or for the user), app-password scope, networks,
//     expiry, predating a primary-password change, unused for too long;
//  5. allow.
package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Protocol names as used in config, scopes and audit records.
const (
	IMAP = "imap"
	SMTP = "smtp"
	LDAP = "ldap"
)

// Protocols returns every protocol Legate fronts, in canonical order (a new
// slice each time: the list itself cannot be changed).
func Protocols() []string { return []string{IMAP, SMTP, LDAP} }

// ValidProtocol reports whether p names a protocol Legate fronts.
func ValidProtocol(p string) bool { return p == IMAP || p == SMTP || p == LDAP }

// Config is the policy part of the configuration. The zero value requires TLS
// for nothing and allows every protocol; use Default for the documented defaults.
type Config struct {
	RequireTLS             bool
	AllowPlaintextLoopback bool
	TrustedNetworks        []netip.Prefix
	BlockLegacyAuth        bool
	BlockedUsers           []string
	BlockedGroups          []string
	// Admins names users that are administrators; AdminGroups names groups
	// whose members are (the directory may also mark a user admin itself).
	Admins      []string
	AdminGroups []string
	// Protocols switched on for everyone; nil means all.
	Protocols []string
	// UserProtocols restricts named users to these protocols.
	UserProtocols          map[string][]string
	RevokeOnPasswordChange bool
	// ExpireUnusedAfter refuses app passwords unused (or never used) for that
	// long; zero means never.
	ExpireUnusedAfter time.Duration
}

// Default returns the policy defaults of docs/contract.md §8.
func Default() Config {
	return Config{
		RequireTLS:             true,
		Protocols:              Protocols(),
		RevokeOnPasswordChange: true,
	}
}

// Request describes one login attempt as a front-end sees it.
type Request struct {
	User     string
	IP       netip.Addr
	Protocol string
	TLS      bool
}

// User is what the directory knows about the proven user.
type User struct {
	Name            string
	Groups          []string
	Admin           bool
	Disabled        bool
	PasswordChanged time.Time // zero: unknown
}

// CredentialKind says how the secret was proven.
type CredentialKind int

const (
	// AppPassword: the secret matched one of the user's app passwords.
	AppPassword CredentialKind = iota + 1
	// Primary: the secret matched the user's primary password.
	Primary
)

// Credential is the proven secret: an app password (with its restrictions) or
// the primary password.
type Credential struct {
	Kind     CredentialKind
	ID       string // app password id
	Name     string // app password name
	Created  time.Time
	Expires  time.Time // zero: never
	Scope    []string  // empty: every protocol
	Networks []netip.Prefix
	LastUsed time.Time // zero: never used
}

// Input is everything Decide looks at.
type Input struct {
	Request
	// Throttled is set by the login service when the client or user is over
	// its failure budget; the secret was then not checked.
	Throttled bool
	// User is nil when the user is unknown to the directory.
	User *User
	// Credential is nil when the secret matched nothing usable.
	Credential *Credential
	Now        time.Time
	// NoTrace skips building the step-by-step trace (the login hot path);
	// the outcome, rule and reason are the same either way.
	NoTrace bool
}

// Outcome classifies a decision into the protocol answers of docs/contract.md §4.
type Outcome int

const (
	Allow          Outcome = iota // allowed
	BadCredentials                // generic authentication failure
	Refused                       // proven, but refused by policy (reason may be shown)
	Expired                       // proven app password that no longer works
	TLSRequired                   // credentials not accepted on this connection
	Throttled                     // temporary refusal, secret not checked
	// Unavailable is never returned by Decide: the login service sets it when
	// the store or directory could not be asked.
	Unavailable
)

func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case BadCredentials:
		return "bad_credentials"
	case Refused:
		return "refused"
	case Expired:
		return "expired"
	case TLSRequired:
		return "tls_required"
	case Throttled:
		return "throttled"
	case Unavailable:
		return "unavailable"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Rule names the rule that decided. They appear in logs, audit records,
// metrics labels and `legate explain`.
type Rule string

const (
	RuleTLSRequired      Rule = "tls_required"
	RuleThrottled        Rule = "throttled"
	RuleBadCredentials   Rule = "bad_credentials"
	RuleLegacyBlocked    Rule = "legacy_auth_blocked"
	RuleUserBlocked      Rule = "user_blocked"
	RuleGroupBlocked     Rule = "group_blocked"
	RuleAdmin            Rule = "admin"
	RuleDisabled         Rule = "user_disabled"
	RuleProtocolOff      Rule = "protocol_disabled"
	RuleUserProtocolOff  Rule = "protocol_disabled_for_user"
	RuleScope            Rule = "outside_scope"
	RuleNetwork          Rule = "outside_networks"
	RuleExpired          Rule = "expired"
	RulePasswordChanged  Rule = "password_changed"
	RuleUnused           Rule = "unused_expired"
	RuleAllowAppPassword Rule = "app_password"
	RuleAllowPrimary     Rule = "trusted_network_primary"
)

// Step is one line of a decision's trace.
type Step struct {
	Rule   Rule
	Passed bool
	Detail string
}

func (s Step) String() string {
	mark := "ok  "
	if !s.Passed {
		mark = "FAIL"
	}
	return fmt.Sprintf("%s %-28s %s", mark, s.Rule, s.Detail)
}

// Decision is the result of Decide.
type Decision struct {
	Outcome Outcome
	Rule    Rule
	// Reason is a short text safe to show the client; empty for outcomes whose
	// answer must stay generic (bad credentials).
	Reason string
	Trace  []Step
}

// Allowed reports whether the login may proceed.
func (d Decision) Allowed() bool { return d.Outcome == Allow }

// TraceString renders the trace one step per line.
func (d Decision) TraceString() string {
	var b strings.Builder
	for _, s := range d.Trace {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}
