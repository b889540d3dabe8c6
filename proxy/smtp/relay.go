package smtp

import (
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// connectUpstream opens the upstream session for the logged-in user.
func (c *conn) connectUpstream() error {
	o := c.opts
	m := o.metrics()
	upCfg := c.upCfg
	if upCfg == nil {
		c.log.Error("no upstream configured", "user", c.user.Name)
		m.UpstreamError(policy.SMTP)
		return upstream.ErrUnavailable
	}
	var client netip.AddrPort
	if !o.NoClientAddress && c.ip.IsValid() {
		client = netip.AddrPortFrom(c.ip, c.port)
	}
	start := time.Now()
	up, err := dialUpstream(c.ctx, upCfg, o.domain(), upCfg.LoginName(c.user.Name, c.user.Addresses), client)
	if err != nil {
		if c.ctx.Err() == nil { // not merely killed while connecting
			m.UpstreamError(policy.SMTP)
		}
		c.log.Warn("upstream login failed", "user", c.user.Name, "err", err)
		return err
	}
	if up.xclientRefused != nil {
		c.log.Warn("upstream refused XCLIENT: it sees Legate's address (add Legate to its trusted networks)",
			"user", c.user.Name, "reply", up.xclientRefused.Error())
	}
	m.UpstreamConnect(policy.SMTP, time.Since(start))
	c.upMu.Lock()
	c.up = up
	c.upMu.Unlock()
	if c.ctx.Err() != nil { // killed while connecting
		up.abort()
		return c.ctx.Err()
	}
	return nil
}

// closeUpstream drops the upstream connection; polite sends QUIT first.
func (c *conn) closeUpstream(polite bool) {
	c.upMu.Lock()
	up := c.up
	c.up = nil
	c.upMu.Unlock()
	if up == nil {
		return
	}
	if polite {
		up.quit()
	} else {
		up.abort()
	}
}

// resetUpstream aborts the upstream transaction with RSET; when that fails
// the connection is dropped (a new one is made at the next MAIL).
func (c *conn) resetUpstream() {
	if c.up == nil {
		return
	}
	if r, err := c.up.cmd("RSET"); err != nil || r.code != 250 {
		c.log.Warn("upstream RSET failed", "user", c.user.Name, "session", c.regID, "err", errOr(err, r))
		c.closeUpstream(false)
	}
}

func errOr(err error, r *reply) error {
	if err != nil {
		return err
	}
	return r
}

// upstreamFailed handles a failed upstream command: the connection is
// dropped and lost answered.
func (c *conn) upstreamFailed(err error, lost *reply) *reply {
	c.log.Warn("upstream failed", "user", c.user.Name, "session", c.regID, "err", err)
	c.closeUpstream(false)
	return lost
}

// mailAllowed answers MAIL and RCPT before authentication.
func (c *conn) notAuthenticated() *reply {
	if c.hello == "" {
		return replyNoHello
	}
	if !c.opts.Auth.CredentialsAccepted(c.tls, c.ip) {
		return replyNeedTLS
	}
	return replyAuthReq
}

// cutFold cuts prefix from s, ignoring case.
func cutFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// cmdMail starts a transaction: the sender must be the user's, and the
// upstream must accept it.
func (c *conn) cmdMail(arg string) *reply {
	if !c.authenticated.Load() || c.hello == "" {
		return c.notAuthenticated()
	}
	if c.tx != nil {
		return newReply(503, "5.5.1", "Nested MAIL command")
	}
	rest, ok := cutFold(arg, "FROM:")
	if !ok {
		return newReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
	}
	from, null, p, r := parseMail(rest, frontend.Or(c.opts.MaxMessageBytes, DefaultMaxMessageBytes))
	if r != nil {
		return r
	}
	if null && !c.opts.AllowNullSender {
		return replyNullSender
	}
	if !null && !c.opts.AllowAnySender && !ownsAddress(c.user.Addresses, from.String()) {
		c.log.Warn("sender refused", "user", c.user.Name, "session", c.regID, "from", from.String())
		return newReply(553, "5.7.1", "Sender address not owned by user <"+c.user.Name+">")
	}
	for attempt := 0; ; attempt++ {
		if c.up == nil {
			if err := c.connectUpstream(); err != nil {
				return replyUpstreamDown
			}
		}
		if _, ok := c.up.ext["SMTPUTF8"]; p.utf8 && !ok {
			return replyNoUTF8Up
		}
		if _, ok := c.up.ext["PIPELINING"]; ok {
			// Answered here; the upstream's answer comes with the first
			// RCPT (sendMailRcpt).
			c.tx = &transaction{utf8: p.utf8, mail: &pendingMail{from: from, null: null, p: p}}
			return replyMailOK
		}
		r, err := c.up.cmd(mailCommand(from, null, p, c.up.ext))
		if err == nil {
			if r.code == 250 {
				c.tx = &transaction{utf8: p.utf8}
			}
			return r
		}
		if attempt > 0 {
			return c.upstreamFailed(err, replyUpstreamDown)
		}
		c.log.Info("upstream connection lost, reconnecting", "user", c.user.Name, "session", c.regID, "err", err)
		c.closeUpstream(false)
	}
}

// cmdRcpt adds a recipient upstream; the upstream's answer is the client's.
func (c *conn) cmdRcpt(arg string) *reply {
	if !c.authenticated.Load() || c.hello == "" {
		return c.notAuthenticated()
	}
	if c.tx == nil {
		return newReply(503, "5.5.1", "Need MAIL before RCPT")
	}
	if c.bdat != nil {
		return newReply(503, "5.5.1", "RCPT not allowed during BDAT")
	}
	rest, ok := cutFold(arg, "TO:")
	if !ok {
		return newReply(501, "5.5.4", "Syntax: RCPT TO:<address>")
	}
	to, p, r := parseRcpt(rest, c.tx.utf8)
	if r != nil {
		return r
	}
	max := frontend.Or(c.opts.MaxRecipients, DefaultMaxRecipients)
	c.tx.attempts++
	if c.tx.rcpts >= max || c.tx.attempts > 2*max {
		return replyTooManyRcpt
	}
	if c.up == nil {
		c.tx = nil
		return replyUpstreamLost
	}
	if c.tx.mail != nil {
		return c.sendMailRcpt(to, p)
	}
	r, err := c.up.cmd(rcptCommand(to, p, c.up.ext))
	if err != nil {
		c.tx = nil
		return c.upstreamFailed(err, replyUpstreamLost)
	}
	if r.code == 250 || r.code == 251 {
		c.tx.rcpts++
	}
	return r
}

// errClientData marks a failure reading the client's DATA.
var errClientData = errors.New("smtp: client data")

// pendingMail is a MAIL accepted locally and not yet sent upstream.
type pendingMail struct {
	from mailbox
	null bool
	p    mailParams
}

// replyMailOK answers a MAIL whose upstream answer comes with the first
// RCPT.
var replyMailOK = newReply(250, "2.1.0", "OK")

// sendMailRcpt sends the pending MAIL and the first RCPT upstream in one
// write (RFC 2920) and reads both replies. A refused MAIL is the client's
// answer to this RCPT and ends the transaction, here and upstream. An
// upstream connection found dead before any reply (it may have idled out
// since the last message) is replaced once.
func (c *conn) sendMailRcpt(to mailbox, p rcptParams) *reply {
	m := c.tx.mail
	for attempt := 0; ; attempt++ {
		mr, rr, err := c.up.mailRcpt(mailCommand(m.from, m.null, m.p, c.up.ext), rcptCommand(to, p, c.up.ext))
		switch {
		case mr != nil && mr.code != 250:
			c.tx = nil
			c.log.Info("upstream refused MAIL", "user", c.user.Name, "session", c.regID, "reply", mr.Error())
			if err != nil || rr != nil && rr.positive() || mr.positive() {
				// The connection failed after the refusal, or the
				// upstream answered out of protocol: start over.
				c.closeUpstream(false)
			}
			if mr.positive() { // a 2xx or 3xx that is not 250
				return replyUpstreamLost
			}
			return mr
		case err == nil:
			c.tx.mail = nil
			if rr.code == 250 || rr.code == 251 {
				c.tx.rcpts++
			}
			return rr
		case mr != nil || attempt > 0:
			c.tx = nil
			return c.upstreamFailed(err, replyUpstreamLost)
		}
		c.log.Info("upstream connection lost, reconnecting", "user", c.user.Name, "session", c.regID, "err", err)
		c.closeUpstream(false)
		if err := c.connectUpstream(); err != nil {
			c.tx = nil
			return replyUpstreamDown
		}
		if _, ok := c.up.ext["SMTPUTF8"]; m.p.utf8 && !ok {
			c.tx = nil
			return replyNoUTF8Up
		}
	}
}
