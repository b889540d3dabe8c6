package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"time"
	"unsafe"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/policy"
)

// The DATA fast path. go-smtp hands Session.Data a reader that unstuffs
// the message a byte at a time, and the go-smtp client stuffs it again a
// byte at a time; under load that was most of the proxy's CPU per
// message. Instead, the dot-stuffed stream is read straight from go-smtp's
// buffered client reader (on a plaintext connection, once that is empty,
// from the connection itself) and passed through dotRelay, which copies
// well-formed lines unchanged, to the upstream connection. The bytes sent
// are exactly those of the old path (dotdata.go). The line-length limit
// is go-smtp's (counted below its buffer; when reading directly, counted
// the same way here), and the final ".\r\n" is left for go-smtp's reader.

// dataFlushSize is the output held before it is written upstream.
const dataFlushSize = 32 << 10

// dataBufs are the buffers of one DATA: direct reads and output.
type dataBufs struct{ in, out []byte }

func (s *Server) dataBufs() *dataBufs {
	if b, ok := s.bufs.Get().(*dataBufs); ok {
		return b
	}
	return &dataBufs{in: make([]byte, 32<<10), out: make([]byte, 0, dataFlushSize+16<<10)}
}

func (s *Server) putDataBufs(b *dataBufs) { s.bufs.Put(b) }

// dataFlushAge is how long output may wait for more before a read from the
// client that would block: a slow client does not starve the upstream.
const dataFlushAge = time.Second

var bufioReaderType = reflect.TypeFor[*bufio.Reader]()

// clientBuffer returns the buffered client reader behind r when r is
// go-smtp's DATA reader (v0.25: type dataReader, first field r
// *bufio.Reader, reading the connection from the first byte of the
// message), else nil: then the reader is used as it is (BDAT, or another
// go-smtp version). The field is only read, never written.
func clientBuffer(r io.Reader) *bufio.Reader {
	v := reflect.ValueOf(r)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	e := v.Elem()
	t := e.Type()
	if t.Kind() != reflect.Struct || t.Name() != "dataReader" ||
		t.PkgPath() != "github.com/emersion/go-smtp" || t.NumField() == 0 {
		return nil
	}
	if f := t.Field(0); f.Name != "r" || f.Type != bufioReaderType {
		return nil
	}
	return *(**bufio.Reader)(unsafe.Pointer(e.Field(0).UnsafeAddr()))
}

// relayRawData is relayData for a DATA whose stuffed stream is in br, to
// an upstream whose plaintext connection is up.dc.
func (s *smtpSession) relayRawData(br *bufio.Reader, up *upstreamConn) error {
	w, err := up.client.Data()
	if err != nil {
		return s.upstreamErr(err, errUpstreamLost)
	}
	o := s.c.opts
	var direct *idleConn
	if s.sc.Conn() == net.Conn(s.c.ic) { // go-smtp reads it as it is: no TLS
		direct = s.c.ic
	}
	bufs := s.c.srv.dataBufs()
	defer s.c.srv.putDataBufs(bufs)
	in := newStuffedInput(br, direct, orInt(o.MaxLineLength, DefaultMaxLineLength), bufs.in)
	defer in.finish()
	t, out, res, err := copyData(in, orInt(o.MaxMessageBytes, DefaultMaxMessageBytes), bufs.out[:0],
		func(b []byte) error {
			_, err := up.dc.Write(b)
			return err
		})
	// Counted once per message (bytes handed to the upstream, before
	// dot-stuffing), also when the transaction is then aborted.
	o.metrics().RelayedBytes(policy.SMTP, dirToUpstream, int(t.n))
	if res == feedLimit {
		err = &clientReadError{gosmtp.ErrDataTooLarge}
	}
	if err != nil {
		var re *clientReadError
		if !errors.As(err, &re) {
			err = s.upstreamErr(err, errUpstreamLost)
			skipData(in, &t)
			return err
		}
		s.c.log.Info("client data ended early, upstream transaction aborted",
			"user", s.user.Name, "session", s.regID, "err", re.err)
		s.closeUpstream(false)
		if res == feedLimit {
			skipData(in, &t) // go-smtp reads the final dot and answers
			return gosmtp.ErrDataTooLarge
		}
		if errors.Is(re.err, gosmtp.ErrTooLongLine) {
			return errLineTooLong
		}
		return errUpstreamLost
	}
	// The end: what the encoder holds back, "\r\n" at most, is part of the
	// final "\r\n.\r\n" that w writes; the rest goes out with it.
	up.dc.deferWrite(out[:len(out)-t.holdBack()])
	up.dc.timeout.Store(int64(orDur(o.SubmissionTimeout, DefaultSubmissionTimeout)))
	resp, err := w.CloseWithResponse()
	up.dc.deferred = nil // written, or the connection is dropped below
	up.dc.timeout.Store(int64(o.Upstream.IOTimeoutOrDefault()))
	s.inTx = false
	if err != nil {
		return s.upstreamErr(err, errUpstreamLost)
	}
	code, msg := splitEnhanced(resp.StatusText)
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: code, Message: msg}
}

// stuffedInput is the client's dot-stuffed DATA stream: go-smtp's
// buffered reader, and on a plaintext connection (direct set), once that
// buffer is used up, the connection itself, read in bigger pieces and
// without go-smtp's per-byte line counting. Bytes read directly but not
// consumed (the final dot and whatever the client sent after it) go back
// to the connection for go-smtp (finish).
type stuffedInput struct {
	br      *bufio.Reader
	direct  *idleConn
	maxLine int // go-smtp's line limit (0: none), applied to direct reads
	// line is what go-smtp's line counter holds for the bytes read so far:
	// the bytes after the last LF, plus one.
	line int

	onDirect bool
	buf      []byte // direct reads; buf[off:end] not consumed yet
	off, end int
}

func newStuffedInput(br *bufio.Reader, direct *idleConn, maxLine int, buf []byte) *stuffedInput {
	return &stuffedInput{br: br, direct: direct, maxLine: maxLine, line: 1, buf: buf[:cap(buf)]}
}

// empty reports whether nothing read is left unconsumed.
func (in *stuffedInput) empty() bool {
	return in.off == in.end && in.br.Buffered() == 0
}

// next returns the input not consumed yet; with more set it first waits
// for at least one byte more: the caller has used up what it had, or left
// the ≤ 2 bytes of a dot it cannot judge yet. The end of the stream is
// unexpected here.
func (in *stuffedInput) next(more bool) ([]byte, error) {
	if !in.onDirect {
		// Switch when go-smtp's buffer is empty, and not in a line so long
		// that the ".\r" handed back at the end would overflow go-smtp's
		// counter (which then resumes where it stopped).
		if !more || in.br.Buffered() > 0 || in.direct == nil || in.maxLine > 0 && in.line+2 > in.maxLine {
			return in.peek(more)
		}
		in.onDirect = true
	}
	if more {
		n := copy(in.buf, in.buf[in.off:in.end])
		in.off, in.end = 0, n
		r, err := in.direct.Read(in.buf[in.end:])
		if r == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if !in.countLines(in.buf[in.end : in.end+r]) {
			in.direct.fail(gosmtp.ErrTooLongLine) // go-smtp closes the connection
			return nil, gosmtp.ErrTooLongLine
		}
		in.end += r
	}
	return in.buf[in.off:in.end], nil
}

func (in *stuffedInput) peek(more bool) ([]byte, error) {
	if more {
		if _, err := in.br.Peek(in.br.Buffered() + 1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	b, _ := in.br.Peek(in.br.Buffered())
	return b, nil
}

// consume marks the first k bytes of what next returned as used.
func (in *stuffedInput) consume(b []byte, k int) {
	if in.onDirect {
		in.off += k
		return
	}
	_, _ = in.br.Discard(k)
	if j := bytes.LastIndexByte(b[:k], '\n'); j >= 0 {
		in.line = k - j
	} else {
		in.line += k
	}
}

// countLines counts b into line as go-smtp's lineLimitReader does, and
// reports whether the limit holds.
func (in *stuffedInput) countLines(b []byte) bool {
	if in.maxLine <= 0 {
		return true
	}
	for {
		j := bytes.IndexByte(b, '\n')
		if j < 0 {
			in.line += len(b)
			return in.line <= in.maxLine
		}
		if in.line+j > in.maxLine {
			return false
		}
		in.line = 1
		b = b[j+1:]
	}
}

// finish hands what was read directly but not consumed back to the
// connection, to be read by go-smtp next.
func (in *stuffedInput) finish() {
	if in.onDirect && in.off < in.end {
		in.direct.unread(in.buf[in.off:in.end])
	}
	in.off, in.end = 0, 0
}

// copyData reads a stuffed message from in up to, not including, its
// final ".\r\n" and passes the output of t to write, in pieces of about
// dataFlushSize, appending to out. It returns when the final dot is next
// (res feedEnd), limit decoded bytes are reached (feedLimit), a read
// fails (err is a *clientReadError) or write fails. At feedEnd, out holds
// the output not written yet, which ends with t.holdBack() bytes.
func copyData(in *stuffedInput, limit int64, out []byte, write func([]byte) error) (t dotRelay, _ []byte, res feedResult, err error) {
	flushed := time.Now()
	flush := func() error {
		const keep = 2 // the most holdBack can be
		if err := write(out[:len(out)-keep]); err != nil {
			return err
		}
		out = append(out[:0], out[len(out)-keep:]...)
		flushed = time.Now()
		return nil
	}
	for more := in.empty(); res == feedMore; more = true {
		if more && len(out) > 2 && time.Since(flushed) >= dataFlushAge {
			if err = flush(); err != nil {
				return t, out, res, err
			}
		}
		b, rerr := in.next(more)
		if rerr != nil {
			return t, out, res, &clientReadError{rerr}
		}
		var k int
		k, out, res = t.feed(b, out, limit)
		in.consume(b, k)
		if len(out) >= dataFlushSize {
			if err = flush(); err != nil {
				return t, out, res, err
			}
		}
	}
	return t, out, res, nil
}

// skipData reads the rest of a refused message up to the final dot,
// which it leaves for go-smtp's reader. Read errors end it: go-smtp meets
// them too.
func skipData(in *stuffedInput, t *dotRelay) {
	for more := in.empty(); ; more = true {
		b, err := in.next(more)
		if err != nil {
			return
		}
		k, res := t.skip(b)
		in.consume(b, k)
		if res == feedEnd {
			return
		}
	}
}
