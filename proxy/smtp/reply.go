package smtp

import (
	"bufio"
	"strconv"
	"strings"
)

// reply is an SMTP reply (RFC 5321 §4.2): a code and one or more lines of
// text, each starting with the enhanced status code (RFC 3463) where there
// is one. It is written with CRLF endings, every line but the last marked
// with '-'.
type reply struct {
	code  int
	lines []string
}

// newReply is a one-line reply "code enh text"; enh may be empty.
func newReply(code int, enh, text string) *reply {
	if enh != "" {
		text = enh + " " + text
	}
	return &reply{code: code, lines: []string{text}}
}

// Error makes a reply usable as an error on the paths that return one.
func (r *reply) Error() string { return strconv.Itoa(r.code) + " " + strings.Join(r.lines, " / ") }

// positive reports a 2xx or 3xx reply.
func (r *reply) positive() bool { return r.code >= 200 && r.code < 400 }

// writeTo buffers the reply in w.
func (r *reply) writeTo(w *bufio.Writer) {
	code := strconv.Itoa(r.code)
	lines := r.lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	for i, l := range lines {
		w.WriteString(code)
		if i < len(lines)-1 {
			w.WriteByte('-')
		} else {
			w.WriteByte(' ')
		}
		w.WriteString(l)
		w.WriteString("\r\n")
	}
}

// cleanText makes text safe for one reply line: control characters (CR
// and LF included) become spaces.
func cleanText(s string) string {
	if strings.IndexFunc(s, isCtl) < 0 {
		return s
	}
	return strings.Map(func(c rune) rune {
		if isCtl(c) {
			return ' '
		}
		return c
	}, s)
}

func isCtl(c rune) bool { return c < 0x20 || c == 0x7f }

// Replies of this front-end (docs/contract.md §4 and RFC 5321 §4.2.2).
var (
	replyNeedTLS = newReply(530, "5.7.0", "Must issue a STARTTLS command first")
	replyAuthReq = newReply(530, "5.7.0", "Authentication required")
	replyNoHello = newReply(502, "5.5.1", "Please introduce yourself first")
	replyBadSeq  = newReply(503, "5.5.1", "Bad sequence of commands")
	replyOK      = newReply(250, "2.0.0", "OK")
	replyBye     = newReply(221, "2.0.0", "Bye")

	replyNullSender   = newReply(553, "5.7.1", "Null sender <> not allowed")
	replyUpstreamDown = newReply(454, "4.7.0", "Upstream server unavailable, try again later")
	replyUpstreamLost = newReply(451, "4.4.2", "Connection to upstream server lost, restart the transaction")
	replyNoUTF8Up     = newReply(555, "5.5.4", "SMTPUTF8 not supported by the upstream server")
	replyLineTooLong  = newReply(500, "5.4.0", "Line too long")
	replyTooLarge     = newReply(552, "5.3.4", "Message too big")
	replyTooManyRcpt  = newReply(452, "4.5.3", "Too many recipients")
	replyTimeout      = newReply(421, "4.4.2", "Idle timeout, closing connection")
	replyTooManyPre   = newReply(421, "4.7.0", "Too many commands without authentication, closing connection")
	replyTooManyBad   = newReply(500, "5.5.1", "Too many unrecognized commands, closing connection")
	replyUnknown      = newReply(500, "5.5.2", "Unrecognized command")
	replyNotImpl      = newReply(502, "5.5.1", "Command not implemented")
	replySyntax       = newReply(501, "5.5.4", "Syntax error in parameters or arguments")
	replyBadChars     = newReply(500, "5.5.2", "Command line contains a control character")

	replyBadCredentials = newReply(535, "5.7.8", "Authentication credentials invalid")
	replyAuthzid        = newReply(535, "5.7.8", "Authorization identity must be the user's own")
	replyThrottled      = newReply(454, "4.7.0", "Too many failed logins, try again later")
	replyAuthUnavail    = newReply(454, "4.7.0", "Temporary authentication failure, try again later")
	replyMalformedAuth  = newReply(501, "5.5.2", "Malformed authentication response")
	replyBadBase64      = newReply(454, "4.7.0", "Invalid base64 data")
	replyAuthCancelled  = newReply(501, "5.0.0", "Authentication cancelled")
	replyUnknownMech    = newReply(504, "5.7.4", "Unsupported authentication mechanism")
	replyAuthOK         = newReply(235, "2.0.0", "Authentication succeeded")
)
