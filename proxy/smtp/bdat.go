package smtp

import (
	"strconv"
	"strings"

	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/policy"
)

// BDAT (CHUNKING, RFC 3030). Each chunk is read as exactly the octets the
// client announced and passed through the same checks as DATA (dotCopier
// in unstuffed mode: bare CR and LF normalised, lines and size bounded); the
// upstream gets one ordinary, dot-stuffed DATA, so it needs no CHUNKING of
// its own. BINARYMIME is not offered.

// bdatState is a BDAT transaction in progress: the upstream is in DATA.
type bdatState struct {
	t    *dotCopier
	bufs *dataBufs
	out  []byte
}

// maxChunkDigits bounds the size argument of BDAT.
const maxChunkDigits = 18

// cmdBdat receives one chunk. A chunk is always read to its end, also when
// it is refused, so that its octets are never taken for commands; a size
// that does not parse closes the connection for that reason.
func (c *conn) cmdBdat(arg string) (*reply, bool) {
	f := strings.Fields(arg)
	if len(f) < 1 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") || len(f[0]) > maxChunkDigits {
		return newReply(501, "5.5.4", "Syntax: BDAT size [LAST], closing connection"), true
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return newReply(501, "5.5.4", "Syntax: BDAT size [LAST], closing connection"), true
	}
	last := len(f) == 2
	refuse := func(r *reply) (*reply, bool) {
		if err := c.discardChunk(n); err != nil {
			return nil, true
		}
		return r, false
	}
	switch {
	case !c.authenticated.Load() || c.hello == "":
		return refuse(c.notAuthenticated())
	case c.tx == nil:
		return refuse(newReply(503, "5.5.1", "Need MAIL before BDAT"))
	case c.tx.rcpts == 0:
		return refuse(newReply(503, "5.5.1", "Need RCPT before BDAT"))
	}
	o := c.opts
	if c.bdat == nil {
		if c.up == nil {
			c.tx = nil
			return refuse(replyUpstreamLost)
		}
		r, err := c.up.cmd("DATA")
		if err != nil {
			c.tx = nil
			return refuse(c.upstreamFailed(err, replyUpstreamLost))
		}
		if r.code != 354 {
			c.tx = nil
			return refuse(r)
		}
		t := newDotCopier(frontend.Or(o.MaxLineLength, DefaultMaxLineLength), frontend.Or(o.MaxMessageBytes, DefaultMaxMessageBytes))
		t.unstuffed = true
		b := c.srv.dataBufs()
		c.bdat = &bdatState{t: t, bufs: b, out: b.out[:0]}
	}
	bd, up := c.bdat, c.up
	var upErr error
	res, rerr := c.copyChunk(bd, n, func(b []byte) {
		if upErr == nil {
			_, upErr = up.nc.Write(b)
		}
	})
	switch {
	case rerr != nil:
		c.endBdat()
		c.log.Info("client data ended early, upstream transaction aborted", "user", c.user.Name, "session", c.regID, "err", rerr)
		return nil, true
	case res == feedLong:
		c.endBdat()
		c.log.Warn("line too long in BDAT", "user", c.user.Name, "session", c.regID)
		replyLineTooLong.writeTo(c.bw)
		c.lingerClose()
		return nil, true
	case res == feedTooLarge:
		c.endBdat()
		return replyTooLarge, false
	case upErr != nil:
		c.endBdat()
		return c.upstreamFailed(upErr, replyUpstreamLost), false
	case !last:
		return newReply(250, "2.0.0", strconv.FormatInt(n, 10)+" octets received"), false
	}
	bd.out = bd.t.finish(bd.out)
	_, err = up.nc.Write(bd.out)
	c.recordBdat()
	c.tx = nil
	if err != nil {
		return c.upstreamFailed(err, replyUpstreamLost), false
	}
	up.dc.timeout.Store(int64(frontend.Or(o.SubmissionTimeout, DefaultSubmissionTimeout)))
	r, err := up.readReply()
	up.dc.timeout.Store(int64(up.cfg.IOTimeoutOrDefault()))
	if err != nil {
		return c.upstreamFailed(err, replyUpstreamLost), false
	}
	return r, false
}

// copyChunk passes n octets of the client's input through bd.t, writing
// the output upstream in pieces of about dataFlushSize. After a refusal
// (feedTooLarge) it reads the chunk on, discarding; after feedLong it
// stops.
func (c *conn) copyChunk(bd *bdatState, n int64, write func([]byte)) (feedResult, error) {
	res := feedMore
	for n > 0 {
		if c.br.Buffered() == 0 {
			if err := c.flush(); err != nil {
				return res, err
			}
			if _, err := c.br.Peek(1); err != nil {
				return res, err
			}
		}
		b, _ := c.br.Peek(int(min(int64(c.br.Buffered()), n)))
		if res == feedTooLarge {
			k, _ := c.br.Discard(len(b))
			n -= int64(k)
			continue
		}
		k, out, r := bd.t.feed(b, bd.out)
		bd.out = out
		_, _ = c.br.Discard(k)
		n -= int64(k)
		switch r {
		case feedLong:
			return r, nil
		case feedTooLarge:
			res = feedTooLarge
			bd.out = bd.out[:0]
			continue
		}
		if len(bd.out) >= dataFlushSize {
			write(bd.out)
			bd.out = bd.out[:0]
		}
	}
	if res == feedMore && len(bd.out) >= dataFlushSize/2 {
		write(bd.out)
		bd.out = bd.out[:0]
	}
	return res, nil
}

// discardChunk reads and drops n octets of a refused chunk.
func (c *conn) discardChunk(n int64) error {
	for n > 0 {
		if c.br.Buffered() == 0 {
			if err := c.flush(); err != nil {
				return err
			}
		}
		k, err := c.br.Discard(int(min(n, int64(clientReadBuf))))
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// recordBdat counts the message and releases its buffers.
func (c *conn) recordBdat() {
	bd := c.bdat
	if bd == nil {
		return
	}
	c.bdat = nil
	c.opts.metrics().RelayedBytes(policy.SMTP, frontend.DirToUpstream, int(bd.t.n))
	if bd.t.bare > 0 {
		c.log.Info("bare CR or LF in BDAT normalised to CRLF", "user", c.user.Name, "session", c.regID, "count", bd.t.bare)
	}
	bd.bufs.out = bd.out[:0]
	c.srv.bufs.Put(bd.bufs)
}

// endBdat aborts a BDAT transaction: the upstream, in the middle of DATA,
// is dropped without the final dot, so it discards the message.
func (c *conn) endBdat() {
	if c.bdat == nil {
		return
	}
	c.recordBdat()
	c.tx = nil
	c.closeUpstream(false)
}
