package smtp

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/legate-proxy/legate/internal/frontend"
)

// maxBadCommands is how many unrecognised commands a connection may send;
// the next one is answered and the connection closed.
const maxBadCommands = 3

// handle runs one command line and returns its reply (nil when the
// command wrote its own) and whether the connection is to be closed.
func (c *conn) handle(line string) (*reply, bool) {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	if strings.IndexFunc(line, isCtl) >= 0 {
		return c.badCommand(replyBadChars)
	}
	switch verb {
	case "NOOP":
		return replyOK, false
	case "QUIT":
		return replyBye, true
	}
	if !c.authenticated.Load() {
		c.preauth++
		if c.preauth > frontend.Or(c.opts.MaxPreauthCommands, DefaultMaxPreauthCommands) {
			c.log.Warn("too many commands before authentication", "count", c.preauth)
			return replyTooManyPre, true
		}
	}
	switch verb {
	case "EHLO", "HELO":
		return c.cmdHello(verb == "EHLO", arg), false
	case "STARTTLS":
		return c.cmdStartTLS(arg)
	case "AUTH":
		return c.cmdAuth(arg)
	case "MAIL":
		return c.cmdMail(arg), false
	case "RCPT":
		return c.cmdRcpt(arg), false
	case "DATA":
		return c.cmdData(arg)
	case "RSET":
		if arg != "" {
			return replySyntax, false
		}
		c.resetTx()
		return replyOK, false
	case "BDAT":
		return c.cmdBdat(arg)
	case "VRFY", "EXPN", "HELP", "ETRN", "TURN":
		// Not offered: the upstream's directory is not the client's to
		// probe.
		return c.badCommand(replyNotImpl)
	}
	return c.badCommand(replyUnknown)
}

// badCommand counts an unrecognised command; past maxBadCommands the
// connection is closed.
func (c *conn) badCommand(r *reply) (*reply, bool) {
	c.bad++
	if c.bad > maxBadCommands {
		c.log.Warn("too many unrecognised commands")
		return replyTooManyBad, true
	}
	return r, false
}

// cmdHello answers EHLO (with the extensions) and HELO, and resets the
// transaction (RFC 5321 §4.1.4).
func (c *conn) cmdHello(ehlo bool, arg string) *reply {
	arg = strings.TrimSpace(arg)
	if arg == "" || len(arg) > 255 || strings.ContainsAny(arg, " \t") {
		return newReply(501, "5.5.4", "Domain or address literal required")
	}
	c.resetTx()
	c.hello = arg
	domain := c.opts.domain()
	if !ehlo {
		return newReply(250, "", domain)
	}
	lines := []string{domain + " Hello " + arg, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
		"SMTPUTF8", "DSN", "CHUNKING", fmt.Sprintf("SIZE %d", frontend.Or(c.opts.MaxMessageBytes, DefaultMaxMessageBytes))}
	if !c.tls && c.opts.TLS != nil {
		lines = append(lines, "STARTTLS")
	}
	if !c.authenticated.Load() && c.opts.Auth.CredentialsAccepted(c.tls, c.ip) {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	return &reply{code: 250, lines: lines}
}

// cmdStartTLS switches the connection to TLS (RFC 3207). Input the client
// pipelined after STARTTLS is discarded, never read as if it came over TLS.
func (c *conn) cmdStartTLS(arg string) (*reply, bool) {
	switch {
	case arg != "":
		return replySyntax, false
	case c.tls:
		return newReply(502, "5.5.1", "Already running in TLS"), false
	case c.opts.TLS == nil:
		return newReply(502, "5.5.1", "TLS not supported"), false
	}
	newReply(220, "2.0.0", "Ready to start TLS").writeTo(c.bw)
	if err := c.flush(); err != nil {
		return nil, true
	}
	if n := c.br.Buffered(); n > 0 {
		c.log.Warn("input pipelined after STARTTLS discarded", "bytes", n)
		_, _ = c.br.Discard(n)
	}
	tc := tls.Server(c.ic, c.opts.TLS)
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.log.Debug("tls handshake failed", "err", err)
		return nil, true
	}
	c.setNC(tc)
	c.br.Reset(tc)
	c.bw.Reset(tc)
	c.tls = true
	c.hello = "" // RFC 3207 §4.2: the client starts over with EHLO
	return nil, false
}

// resetTx aborts the transaction, also upstream (RSET there).
func (c *conn) resetTx() {
	if c.bdat != nil {
		c.endBdat()
		return
	}
	if c.tx == nil {
		return
	}
	sent := c.tx.mail == nil // else the upstream has no transaction to reset
	c.tx = nil
	if sent {
		c.resetUpstream()
	}
}
