package imap

import (
	"context"
	"encoding/base64"
	"errors"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/upstream"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/legate-proxy/legate/policy"
)

// Answers to refused logins (docs/contract.md §4).
const (
	ansBadCredentials = "NO [AUTHENTICATIONFAILED] Authentication failed"
	ansTLSRequired    = "NO [PRIVACYREQUIRED] TLS is required: use STARTTLS or the IMAPS port"
	ansThrottled      = "NO [UNAVAILABLE] Too many failures, try later"
	ansUpstreamDown   = "NO [UNAVAILABLE] Upstream server unavailable"
	ansServiceDown    = "NO [UNAVAILABLE] Service temporarily unavailable, try later"
)

// denial returns the tagged answer (without the tag) for a refused login.
func denial(res login.Result) string {
	switch res.Outcome {
	case policy.BadCredentials:
		return ansBadCredentials
	case policy.Refused:
		return "NO [AUTHORIZATIONFAILED] " + reasonOr(res.Reason, "Login refused by policy")
	case policy.Expired:
		return "NO [EXPIRED] " + reasonOr(res.Reason, "App password expired")
	case policy.TLSRequired:
		return ansTLSRequired
	case policy.Throttled:
		return ansThrottled
	}
	return ansServiceDown
}

func reasonOr(reason, def string) string {
	if r := clean(reason, 200); r != "" {
		return r
	}
	return def
}

// authenticate runs AUTHENTICATE PLAIN (RFC 4616), with the initial
// response of SASL-IR (RFC 4959) or after a continuation request.
func (c *conn) authenticate(cmd *command) bool {
	if len(cmd.args) < 1 || len(cmd.args) > 2 || cmd.args[0].kind != tokAtom {
		return c.badCommand(cmd.tag, "AUTHENTICATE takes a mechanism and an optional initial response")
	}
	if !strings.EqualFold(cmd.args[0].val, "PLAIN") {
		return c.writeLine(cmd.tag+" NO Unsupported authentication mechanism") == nil
	}
	var resp string
	if len(cmd.args) == 2 {
		if cmd.args[1].kind != tokAtom {
			return c.badCommand(cmd.tag, "Invalid initial response")
		}
		resp = cmd.args[1].val
	} else {
		if !c.credentialsAccepted() {
			return c.writeLine(cmd.tag+" "+ansTLSRequired) == nil
		}
		if c.writeLine("+ ") != nil {
			return false
		}
		line, err := c.p.readLine()
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				c.farewell("Line too long")
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.farewell("Autologout; pre-login timeout")
			}
			return false
		}
		resp = string(line)
	}
	switch resp {
	case "*":
		return c.badCommand(cmd.tag, "Authentication cancelled")
	case "=":
		resp = ""
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return c.badCommand(cmd.tag, "Invalid base64 data")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 {
		return c.badCommand(cmd.tag, "Invalid PLAIN response")
	}
	authzid, authcid, secret := parts[0], parts[1], parts[2]
	if authzid != "" && !strings.EqualFold(authzid, authcid) {
		return c.writeLine(cmd.tag+" NO [AUTHORIZATIONFAILED] Acting as another user is not supported") == nil
	}
	return c.login(cmd.tag, authcid, secret)
}

// answerBy is when the login service must have decided, so that its answer
// is written before the pre-auth deadline: up to a second before it (half
// of what is left when that is less than two seconds).
func (c *conn) answerBy() time.Time {
	margin := min(max(time.Until(c.deadline)/2, 0), time.Second)
	return c.deadline.Add(-margin)
}

// login asks the login service and, when allowed, passes the session on.
// It reports whether the pre-auth dialogue goes on (false once a session
// has been relayed, or the connection failed).
func (c *conn) login(tag, user, secret string) bool {
	if c.opts.Auth == nil {
		c.log.Error("no login service configured")
		return c.writeLine(tag+" "+ansServiceDown) == nil
	}
	// A throttle's delay may not outlast the pre-auth deadline: the
	// answer must reach the client before the connection is closed.
	actx, cancel := context.WithDeadline(c.ctx, c.answerBy())
	res := c.opts.Auth.Login(actx, login.Request{
		User: user, Secret: secret, IP: c.ip, Protocol: policy.IMAP, TLS: c.isTLS, Client: c.client,
	})
	cancel()
	if c.killed.Load() {
		return false
	}
	if !res.Allowed() {
		return c.writeLine(tag+" "+denial(res)) == nil
	}
	if res.User == nil {
		c.log.Error("login allowed without a user", "user", user)
		return c.writeLine(tag+" "+ansServiceDown) == nil
	}
	log := c.log.With("user", res.User.Name)
	m := c.opts.metrics()
	// The upstream of the configuration that decided (login.Result), not
	// of when the connection was accepted: a reload that moved the
	// upstream or rotated its credential applies to the next login on
	// every connection, and never half.
	up, _ := res.Upstream.(*upstream.Config)
	if up == nil {
		up = c.srv.opts.Load().Upstream
	}
	if up == nil {
		log.Error("no upstream configured")
		m.UpstreamError(policy.IMAP)
		return c.writeLine(tag+" "+ansUpstreamDown) == nil
	}
	id, done := c.register(res) // before the dial: a revocation now closes it
	start := time.Now()
	var origin netip.AddrPort
	if c.opts.PassClientAddress && c.ip.IsValid() {
		origin = netip.AddrPortFrom(c.ip, c.port)
	}
	ul, err := masterLogin(c.ctx, up, up.LoginName(res.User.Name, res.User.Addresses), origin, c.setUpstream)
	if err == nil && !c.confirm(id) { // re-decided now that the upstream is up
		ul.conn.Close()
		err = errors.New("session closed during the upstream login")
	}
	if err != nil {
		done()
		if c.killed.Load() {
			return false
		}
		m.UpstreamError(policy.IMAP)
		log.Warn("upstream login failed", "err", err)
		return c.writeLine(tag+" "+ansUpstreamDown) == nil
	}
	m.UpstreamConnect(policy.IMAP, time.Since(start))
	c.session(tag, res, ul, id, done)
	return false
}
