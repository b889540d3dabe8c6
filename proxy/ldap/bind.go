package ldap

import (
	"github.com/legate-proxy/legate/internal/login"
	"strings"

	"github.com/legate-proxy/legate/policy"
)

// bind handles a BindRequest (RFC 4511 §4.2, RFC 4513 §5.1). Only simple
// binds with a name and a password can open a session; an anonymous bind
// (no name, no password) succeeds but grants only root DSE reads.
func (c *clientConn) bind(m *request) bool {
	b := m.bind
	name, password := b.name, b.password
	// A new bind ends whatever the connection was bound as.
	c.endSession()
	switch {
	case b.version != 3:
		c.reply(m, resultProtocolError, "only LDAPv3 is supported")
		return true
	case !b.simple:
		c.reply(m, resultAuthMethodNotSupported, "only simple bind is supported")
		return true
	}
	switch {
	case name == "" && password == "":
		c.reply(m, resultSuccess, "")
		return true
	case password == "":
		c.reply(m, resultUnwillingToPerform, "unauthenticated bind (DN with no password) disallowed")
		return true
	case name == "":
		c.reply(m, resultInvalidCredentials, "invalid credentials")
		return true
	}
	a := c.opts.Auth
	if a == nil {
		c.reply(m, resultUnavailable, "login service unavailable")
		return true
	}
	if !a.CredentialsAccepted(c.tls, c.ip) {
		c.reply(m, resultConfidentialityRequired, "TLS required: use StartTLS or LDAPS")
		return true
	}
	res := a.Login(c.ctx, login.Request{User: name, Secret: password, IP: c.ip, Protocol: policy.LDAP, TLS: c.tls})
	code, diag := outcomeResult(res)
	if code == resultSuccess && res.User == nil {
		code, diag = resultUnavailable, "login service unavailable"
	}
	if code == resultSuccess && res.User.DN == "" && !c.opts.serviceMode() {
		// Proxied authorization needs the user's entry.
		c.log.Warn("ldap bind: user has no DN for proxied authorization", "user", res.User.Name)
		code, diag = resultUnwillingToPerform, "user has no directory entry"
	}
	if code != resultSuccess {
		c.reply(m, code, diag)
		return true
	}
	c.startSession(res)
	c.reply(m, resultSuccess, "")
	return true
}

// outcomeResult maps a login outcome to a bind result (docs/contract.md §4).
func outcomeResult(res login.Result) (int, string) {
	switch res.Outcome {
	case policy.Allow:
		return resultSuccess, ""
	case policy.BadCredentials:
		return resultInvalidCredentials, "invalid credentials"
	case policy.Refused:
		return resultInvalidCredentials, "refused: " + res.Reason
	case policy.Expired:
		reason := res.Reason
		if !strings.Contains(strings.ToLower(reason), "expired") {
			reason = "expired: " + reason
		}
		return resultInvalidCredentials, reason
	case policy.TLSRequired:
		return resultConfidentialityRequired, "TLS required: use StartTLS or LDAPS"
	case policy.Throttled:
		return resultBusy, "too many failures, try again later"
	}
	return resultUnavailable, "service unavailable, try again later"
}

// startSession records the bound user and registers the session, whose
// kill closes the connection with a Notice of Disconnection.
func (c *clientConn) startSession(res login.Result) {
	apID := res.AppPasswordID()
	id := ""
	var done func()
	if reg := c.opts.Sessions; reg != nil {
		info := sessionInfo(res.User.Name, apID, c.ip)
		info.TLS = c.tls
		id, done = reg.Register(info, func() {
			c.log.Info("ldap session killed", "user", res.User.Name)
			c.kill(resultUnavailable, "session revoked")
		})
		// LDAP dials no upstream per session: re-decide at once, closing
		// the race between the decision and the registration.
		if !reg.Confirm(c.ctx, id) {
			done()
			return
		}
	}
	c.mu.Lock()
	c.user, c.sessionID, c.sessionDone = res.User, id, done
	c.mu.Unlock()
	c.log.Info("ldap session started", "user", res.User.Name, "session", id)
}
