package policy

import (
	"fmt"
	"time"
)

// Refusal is what one of the rules below answers when it refuses: the
// outcome and rule of a decision, the reason safe to show the client and the
// detail for the trace.
type Refusal struct {
	Outcome Outcome
	Rule    Rule
	Reason  string
	Detail  string
}

// MayUseLegacyAuth applies the rules on the user alone that decide whether
// they may use legacy authentication at all — log in with an app password or
// a trusted-network primary password, or hold app passwords (docs/contract.md §1, §3
// step 4): legacy authentication blocked (globally, for the user or one of
// their groups) and administrators. ok is false with the refusing rule
// otherwise. Decide applies it to every login; creating an app password
// (CLI, admin socket, portal) asks the same question.
func (c *Config) MayUseLegacyAuth(u *User) (Refusal, bool) {
	if c.BlockLegacyAuth {
		return Refusal{Refused, RuleLegacyBlocked, "legacy authentication is blocked", "block_legacy_auth is on"}, false
	}
	if containsFold(c.BlockedUsers, u.Name) {
		return Refusal{Refused, RuleUserBlocked, "legacy authentication is blocked for this user",
			fmt.Sprintf("user %s is listed in blocked_users", u.Name)}, false
	}
	if g, ok := firstCommon(c.BlockedGroups, u.Groups); ok {
		return Refusal{Refused, RuleGroupBlocked, "legacy authentication is blocked for this user",
			fmt.Sprintf("user %s is in blocked group %s", u.Name, g)}, false
	}
	if why, admin := c.isAdmin(u); admin {
		return Refusal{Refused, RuleAdmin, "administrators cannot use legacy authentication", why}, false
	}
	return Refusal{}, true
}

// CredentialStatus applies the rules on an app password that make it stop
// working with time (docs/contract.md §1, §3 step 4): its expiry, a primary-password
// change after it was created (policy.revoke_on_password_change; zero
// passwordChanged: unknown), and expire_unused_after. ok is true while the
// password is current. Decide refuses a login with the same rule; `legate
// apppass list` and the portal show it as the password's status.
func (c *Config) CredentialStatus(cred *Credential, passwordChanged, now time.Time) (Refusal, bool) {
	if !cred.Expires.IsZero() && !now.Before(cred.Expires) {
		return Refusal{Expired, RuleExpired, "app password expired",
			"expired at " + cred.Expires.UTC().Format(time.RFC3339)}, false
	}
	if c.RevokeOnPasswordChange && !passwordChanged.IsZero() && cred.Created.Before(passwordChanged) {
		return Refusal{Expired, RulePasswordChanged, "app password predates a password change",
			fmt.Sprintf("created %s, primary password changed %s", cred.Created.UTC().Format(time.RFC3339),
				passwordChanged.UTC().Format(time.RFC3339))}, false
	}
	if c.UnusedExpired(cred.Created, cred.LastUsed, now) {
		last := cred.LastUsed
		if last.IsZero() {
			last = cred.Created
		}
		return Refusal{Expired, RuleUnused, "app password expired (unused)",
			fmt.Sprintf("not used since %s (expire_unused_after %s)", last.UTC().Format(time.RFC3339), c.ExpireUnusedAfter)}, false
	}
	return Refusal{}, true
}
