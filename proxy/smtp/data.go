package smtp

import (
	"bytes"
	"errors"
	"time"

	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/policy"
)

// DATA (RFC 5321 §4.1.1.4). The client's dot-stuffed stream is read from
// the connection's buffer and passed to the upstream as it arrives, never
// held whole, through dotCopier, which checks it on the way:
//
//   - the end of data is CRLF "." CRLF and nothing else;
//   - a bare CR or a bare LF is normalised to CRLF (RFC 5321 §2.3.8 leaves
//     the choice between that and refusing; normalising keeps old clients
//     working), and a dot that then starts a line is stuffed, so the
//     upstream can never see a line end, or an end of data, that Legate did
//     not see;
//   - a line longer than Options.MaxLineLength ends the connection (500
//     5.4.0), a message larger than Options.MaxMessageBytes is refused
//     (552 5.3.4) and its upstream transaction dropped.
//
// For well-formed input (CRLF lines, leading dots doubled) the output is
// the input itself.

// dataFlushSize is the output held before it is written upstream.
const dataFlushSize = 32 << 10

// dataFlushAge is how long output may wait for more before a read from the
// client that would block: a slow client does not starve the upstream.
const dataFlushAge = time.Second

// feedResult says why feed stopped.
type feedResult int

const (
	feedMore     feedResult = iota // the input is used up, or more is needed to tell
	feedEnd                        // the end of data was consumed
	feedLong                       // a line is longer than the limit
	feedTooLarge                   // the message is larger than the limit
)

// dotCopier turns the client's stuffed stream into the stuffed stream for
// the upstream.
type dotCopier struct {
	maxLine int
	limit   int64 // decoded bytes; 0: none
	// unstuffed is set for BDAT chunks (RFC 3030): the input is the message
	// itself, with no dot-stuffing and no end-of-data line.
	unstuffed bool

	wireBOL bool // at the start of a line of the client's stream (after CRLF)
	pendCR  bool // a CR was consumed, its pair not seen yet
	encBOL  bool // at the start of a line of the output (a '.' is stuffed)
	lineLen int  // bytes of the current client line
	n       int64
	bare    int // bare CRs and LFs normalised
}

func newDotCopier(maxLine int, limit int64) *dotCopier {
	return &dotCopier{maxLine: maxLine, limit: limit, wireBOL: true, encBOL: true}
}

// feed consumes bytes of in, appending the output to out, until in is used
// up, the end of data has been consumed, or a limit is crossed. A '.' at the
// start of a line is consumed only with the two bytes after it in in: with
// fewer, feed returns feedMore and the caller must supply more.
func (t *dotCopier) feed(in, out []byte) (int, []byte, feedResult) {
	i := 0
	for i < len(in) {
		c := in[i]
		if t.pendCR {
			t.pendCR = false
			if c == '\n' {
				out = append(out, '\r', '\n')
				t.n += 2
				i++
				t.wireBOL, t.encBOL, t.lineLen = true, true, 0
				continue
			}
			// A bare CR: the line ends here for the upstream, but what
			// follows is not at the start of a client line (no end of data
			// there).
			out = append(out, '\r', '\n')
			t.n += 2
			t.encBOL, t.lineLen = true, 0
			t.bare++
		}
		if t.wireBOL {
			t.wireBOL = false
			if c == '.' && !t.unstuffed {
				if len(in)-i < 3 {
					t.wireBOL = true
					return i, out, feedMore
				}
				if in[i+1] == '\r' && in[i+2] == '\n' {
					return i + 3, out, feedEnd
				}
				// The stuffing dot (or a lone one, dropped alike).
				i++
				t.lineLen++
				continue
			}
		}
		switch c {
		case '\r':
			t.pendCR = true
			i++
			t.lineLen++
			continue
		case '\n':
			out = append(out, '\r', '\n')
			t.n += 2
			i++
			t.encBOL, t.lineLen = true, 0
			t.bare++
			continue
		}
		k := indexCRorLF(in[i:])
		if t.lineLen+k > t.maxLine {
			return i, out, feedLong
		}
		if t.encBOL && c == '.' {
			out = append(out, '.')
		}
		t.encBOL = false
		// A well-formed line end is copied with the line.
		if i+k+1 < len(in) && in[i+k] == '\r' && in[i+k+1] == '\n' {
			out = append(out, in[i:i+k+2]...)
			t.n += int64(k + 2)
			i += k + 2
			t.wireBOL, t.encBOL, t.lineLen = true, true, 0
		} else {
			out = append(out, in[i:i+k]...)
			t.n += int64(k)
			i += k
			t.lineLen += k
		}
		if t.limit > 0 && t.n > t.limit {
			return i, out, feedTooLarge
		}
	}
	if t.lineLen > t.maxLine {
		return i, out, feedLong
	}
	if t.limit > 0 && t.n > t.limit {
		return i, out, feedTooLarge
	}
	return i, out, feedMore
}

// finish ends an unstuffed message: a pending CR becomes CRLF, a last line
// without its end gets one, and the end-of-data line follows.
func (t *dotCopier) finish(out []byte) []byte {
	if t.pendCR {
		t.pendCR, t.encBOL = false, true
		out = append(out, '\r', '\n')
		t.n += 2
		t.bare++
	}
	if !t.encBOL {
		out = append(out, '\r', '\n')
		t.n += 2
	}
	return append(out, '.', '\r', '\n')
}

// indexCRorLF returns the index of the first '\r' or '\n' in b, or len(b).
func indexCRorLF(b []byte) int {
	j := bytes.IndexByte(b, '\n')
	if j < 0 {
		j = len(b)
	}
	if k := bytes.IndexByte(b[:j], '\r'); k >= 0 {
		return k
	}
	return j
}

// dataBufs is the output buffer of one DATA, pooled by the server.
type dataBufs struct{ out []byte }

func (s *Server) dataBufs() *dataBufs {
	if b, ok := s.bufs.Get().(*dataBufs); ok {
		return b
	}
	return &dataBufs{out: make([]byte, 0, dataFlushSize+clientReadBuf+16)}
}

// errLong and errTooLarge are the limits crossed in DATA.
var (
	errLong     = errors.New("smtp: data line too long")
	errTooLarge = errors.New("smtp: message too large")
)

// cmdData relays the message. The transaction ends whatever happens.
func (c *conn) cmdData(arg string) (*reply, bool) {
	if !c.authenticated.Load() || c.hello == "" {
		return c.notAuthenticated(), false
	}
	if arg != "" {
		return replySyntax, false
	}
	if c.tx == nil {
		return newReply(503, "5.5.1", "Need MAIL before DATA"), false
	}
	if c.tx.rcpts == 0 {
		return newReply(503, "5.5.1", "Need RCPT before DATA"), false
	}
	if c.bdat != nil {
		return newReply(503, "5.5.1", "DATA not allowed during BDAT"), false
	}
	c.tx = nil
	if c.up == nil {
		return replyUpstreamLost, false
	}
	up := c.up
	r, err := up.cmd("DATA")
	if err != nil {
		return c.upstreamFailed(err, replyUpstreamLost), false
	}
	if r.code != 354 {
		return r, false
	}
	newReply(354, "", "End data with <CR><LF>.<CR><LF>").writeTo(c.bw)

	o := c.opts
	bufs := c.srv.dataBufs()
	defer c.srv.bufs.Put(bufs)
	t := newDotCopier(frontend.Or(o.MaxLineLength, DefaultMaxLineLength), frontend.Or(o.MaxMessageBytes, DefaultMaxMessageBytes))
	var upErr error
	out, res, rerr := c.copyData(t, bufs.out[:0], func(b []byte) {
		if upErr == nil {
			_, upErr = up.nc.Write(b)
		}
	})
	// Counted once per message (decoded bytes), also when it is then
	// aborted.
	o.metrics().RelayedBytes(policy.SMTP, frontend.DirToUpstream, int(t.n))
	if t.bare > 0 {
		c.log.Info("bare CR or LF in DATA normalised to CRLF", "user", c.user.Name, "session", c.regID, "count", t.bare)
	}
	switch {
	case rerr != nil:
		c.log.Info("client data ended early, upstream transaction aborted", "user", c.user.Name, "session", c.regID, "err", rerr)
		c.closeUpstream(false)
		return nil, true
	case res == feedLong:
		c.log.Warn("line too long in DATA", "user", c.user.Name, "session", c.regID)
		c.closeUpstream(false)
		replyLineTooLong.writeTo(c.bw)
		c.lingerClose()
		return nil, true
	case res == feedTooLarge:
		c.closeUpstream(false)
		return replyTooLarge, false
	case upErr != nil:
		return c.upstreamFailed(upErr, replyUpstreamLost), false
	}
	out = append(out, '.', '\r', '\n')
	if _, err := up.nc.Write(out); err != nil {
		return c.upstreamFailed(err, replyUpstreamLost), false
	}
	up.dc.timeout.Store(int64(frontend.Or(o.SubmissionTimeout, DefaultSubmissionTimeout)))
	r, err = up.readReply()
	up.dc.timeout.Store(int64(up.cfg.IOTimeoutOrDefault()))
	if err != nil {
		return c.upstreamFailed(err, replyUpstreamLost), false
	}
	return r, false
}

// copyData reads the client's stream through t until the end of data,
// handing write the output in pieces of about dataFlushSize. It returns
// the output not written yet. After a refusal (feedTooLarge) it reads on,
// discarding, up to the end of data; after feedLong it stops. rerr is a
// client read error.
func (c *conn) copyData(t *dotCopier, out []byte, write func([]byte)) (_ []byte, res feedResult, rerr error) {
	flushed := time.Now()
	need := 1
	skipping := false
	for {
		if c.br.Buffered() < need {
			if len(out) > 0 && time.Since(flushed) >= dataFlushAge {
				write(out)
				out, flushed = out[:0], time.Now()
			}
			if c.br.Buffered() == 0 {
				// The 354 (and anything before it) goes out before waiting.
				if err := c.flush(); err != nil {
					return out, res, err
				}
			}
			if _, err := c.br.Peek(need); err != nil {
				return out, res, err
			}
		}
		b, _ := c.br.Peek(c.br.Buffered())
		k, o, r := t.feed(b, out)
		_, _ = c.br.Discard(k)
		if skipping {
			o = o[:0]
		}
		out = o
		switch r {
		case feedEnd:
			if skipping {
				return out[:0], feedTooLarge, nil
			}
			return out, feedEnd, nil
		case feedLong:
			return out, feedLong, nil
		case feedTooLarge:
			skipping, t.limit = true, 0
			out = out[:0]
		case feedMore:
			need = 1
			if k < len(b) {
				need = len(b) - k + 1 // a dot at the start of a line: wait for what follows
			}
		}
		if len(out) >= dataFlushSize {
			write(out)
			out, flushed = out[:0], time.Now()
		}
	}
}
