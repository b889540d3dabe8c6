package smtp

import (
	"encoding/base64"
	"errors"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/upstream"
	"strings"

	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
)

// cmdAuth runs AUTH PLAIN or AUTH LOGIN (RFC 4954), with or without an
// initial response.
func (c *conn) cmdAuth(arg string) (*reply, bool) {
	switch {
	case c.hello == "":
		return replyNoHello, false
	case c.authenticated.Load():
		return newReply(503, "5.5.1", "Already authenticated"), false
	case c.tx != nil:
		return replyBadSeq, false
	case !c.opts.Auth.CredentialsAccepted(c.tls, c.ip):
		return replyNeedTLS, false
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	var sasl saslServer
	switch strings.ToUpper(mech) {
	case "PLAIN":
		sasl = newPlainServer(c.login)
	case "LOGIN":
		sasl = newLoginServer(c.login)
	default:
		return replyUnknownMech, false
	}
	var resp []byte
	if hasIR {
		if ir != "=" { // "=" is an empty initial response
			b, err := base64.StdEncoding.DecodeString(ir)
			if err != nil {
				return replyBadBase64, false
			}
			resp = b
		} else {
			resp = []byte{}
		}
	}
	for {
		challenge, done, err := sasl.Next(resp)
		if done || err != nil {
			if err != nil {
				if r, ok := err.(*reply); ok {
					return r, false
				}
				return replyMalformedAuth, false
			}
			return replyAuthOK, false
		}
		newReply(334, "", base64.StdEncoding.EncodeToString(challenge)).writeTo(c.bw)
		line, err := c.readLine()
		if err != nil {
			c.readFailed(err)
			return nil, true
		}
		if line == "*" {
			return replyAuthCancelled, false
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return replyBadBase64, false
		}
		resp = b
	}
}

// login is the end of AUTH PLAIN and AUTH LOGIN: it asks the login service,
// opens the upstream session and registers the session. The error it
// returns is the client's answer.
func (c *conn) login(authzid, user, secret string) error {
	if authzid != "" && !strings.EqualFold(strings.TrimSpace(authzid), strings.TrimSpace(user)) {
		c.log.Warn("login refused: authorization identity differs", "user", user)
		return replyAuthzid
	}
	res := c.opts.Auth.Login(c.ctx, login.Request{
		User: user, Secret: secret, IP: c.ip, Protocol: policy.SMTP,
		TLS: c.tls, Client: c.hello,
	})
	if err := outcomeReply(res.Decision); err != nil {
		return err
	}
	if res.User == nil {
		c.log.Error("login service allowed without a user", "user", user)
		return replyAuthUnavail
	}
	c.user = res.User
	c.apID = res.AppPasswordID()
	// The upstream of the configuration that decided, not of when the
	// connection was accepted: a reload that moved the upstream or rotated
	// its credential applies to the next login on every connection, and
	// never half.
	c.upCfg, _ = res.Upstream.(*upstream.Config)
	if c.upCfg == nil {
		c.upCfg = c.srv.opts.Load().Upstream
	}
	// Register before the dial: a revocation during it closes the session.
	if reg := c.opts.Sessions; reg != nil {
		name := c.user.Name
		c.regID, c.unreg = reg.Register(session.Info{
			User: c.user.Name, AppPasswordID: c.apID, Protocol: policy.SMTP,
			IP: c.ip, Client: c.hello, TLS: c.tls,
		}, func() {
			c.log.Info("session killed", "user", name)
			c.Kill("Session terminated")
		})
	}
	// Open the upstream now, so that an unreachable upstream is reported at
	// AUTH (454 4.7.0) rather than after the client thinks it is in; then
	// re-decide the session, now that it is registered.
	err := c.connectUpstream()
	if reg := c.opts.Sessions; err == nil && reg != nil && !reg.Confirm(c.ctx, c.regID) {
		c.closeUpstream(false)
		err = errors.New("session refused as the upstream came up")
	}
	if err != nil {
		if c.unreg != nil {
			c.unreg()
			c.unreg = nil
		}
		c.user, c.apID = nil, ""
		return replyUpstreamDown
	}
	c.authenticated.Store(true)
	c.ic.authenticated()
	c.log.Info("session started", "user", c.user.Name, "session", c.regID, "app_password", c.apID)
	return nil
}

// outcomeReply maps a login decision to the answer of docs/contract.md §4; nil for
// allow.
func outcomeReply(d policy.Decision) error {
	switch d.Outcome {
	case policy.Allow:
		return nil
	case policy.BadCredentials:
		return replyBadCredentials
	case policy.Refused:
		return newReply(535, "5.7.8", "Authentication refused: "+reasonText(d.Reason, "refused by policy"))
	case policy.Expired:
		r := reasonText(d.Reason, "app password expired")
		if !strings.Contains(strings.ToLower(r), "expired") {
			r = "expired: " + r
		}
		return newReply(535, "5.7.8", "Authentication refused: "+r)
	case policy.TLSRequired:
		return replyNeedTLS
	case policy.Throttled:
		return replyThrottled
	default:
		return replyAuthUnavail
	}
}

// reasonText makes a policy reason safe for a one-line reply.
func reasonText(r, def string) string {
	r = cleanText(strings.TrimSpace(r))
	if r == "" {
		return def
	}
	return r
}
