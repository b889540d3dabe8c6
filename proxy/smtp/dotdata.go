package smtp

import "bytes"

// dotRelay turns the client's dot-stuffed DATA stream (RFC 5321 §4.5.2)
// into the bytes to send upstream, without decoding it into a message
// first. Its output is, byte for byte, what go-smtp's server-side DATA
// reader followed by the go-smtp client's writer (net/textproto's
// DotWriter) would send: the two state machines are run together, and
// where both are in the middle of a line the bytes up to the next CR or LF
// are copied in one go. For well-formed input (CRLF lines, leading dots
// doubled) the output is the input itself. Ill-formed input is normalised
// exactly as before (a bare LF becomes CRLF and a dot after it is doubled),
// so that the upstream can never see an end of data the proxy did not see.
//
// The end-of-data line ".\r\n" is not consumed: feed stops in front of it
// and reports it (see atEnd), so that go-smtp's own reader, whose state is
// still at the beginning of a line, consumes it.
type dotRelay struct {
	d uint8 // decoder state: go-smtp's dataReader
	e uint8 // encoder state: textproto's dotWriter
	// n counts the decoded message bytes (what go-smtp's reader would have
	// returned), the measure of the size limit and of the metrics.
	n int64
}

// Decoder states, in go-smtp's order.
const (
	dBeginLine = iota // beginning of line; initial state
	dDot              // read '.' at beginning of line
	dDotCR            // read ".\r" at beginning of line
	dCR               // read '\r' (possibly at end of line)
	dData             // in the middle of a line
)

// Encoder states, in textproto's order.
const (
	eBegin     = iota // nothing written yet
	eBeginLine        // beginning of line
	eCR               // wrote '\r' (possibly at end of line)
	eData             // in the middle of a line
)

// endLine is the end-of-data line that follows a CRLF.
var endLine = []byte(".\r\n")

// feedResult says why feed stopped.
type feedResult int

const (
	feedMore  feedResult = iota // in is used up, or more bytes are needed to tell
	feedEnd                     // the end-of-data line is next in the input
	feedLimit                   // limit decoded bytes reached, and not at the end
)

// feed consumes bytes of in, appending the output to out, until in is
// used up, the end-of-data line is next, or limit (>0) decoded bytes have
// been produced. It returns the bytes consumed and the grown out. A '.' at
// the beginning of a line is consumed only when the two bytes after it are
// in in: with fewer, feed returns feedMore and the caller must supply more.
func (t *dotRelay) feed(in, out []byte, limit int64) (int, []byte, feedResult) {
	i := 0
	for i < len(in) {
		if limit > 0 && t.n >= limit {
			return i, out, feedLimit
		}
		c := in[i]
		if t.d == dData && t.e == eData && c != '\r' && c != '\n' {
			// Both in the middle of a line: copy up to the next CR or LF.
			k := indexCRorLF(in[i:])
			if limit > 0 {
				k = int(min(int64(k), limit-t.n))
			}
			out = append(out, in[i:i+k]...)
			t.n += int64(k)
			i += k
			continue
		}
		if t.d == dBeginLine && c == '.' {
			if len(in)-i < len(endLine) {
				return i, out, feedMore
			}
			if bytes.Equal(in[i:i+len(endLine)], endLine) {
				return i, out, feedEnd
			}
		}
		out = t.step(c, out)
		i++
	}
	if limit > 0 && t.n >= limit {
		// go-smtp's reader fails as soon as the limit is reached, even if
		// the final dot is next.
		return i, out, feedLimit
	}
	return i, out, feedMore
}

// skip consumes bytes of in like feed but discards the output and has no
// limit: the rest of a message that is refused.
func (t *dotRelay) skip(in []byte) (int, feedResult) {
	i := 0
	for i < len(in) {
		c := in[i]
		if t.d == dData && t.e == eData && c != '\r' && c != '\n' {
			i += indexCRorLF(in[i:])
			continue
		}
		if t.d == dBeginLine && c == '.' {
			if len(in)-i < len(endLine) {
				return i, feedMore
			}
			if bytes.Equal(in[i:i+len(endLine)], endLine) {
				return i, feedEnd
			}
		}
		t.step(c, nil)
		i++
	}
	return i, feedMore
}

// step runs one input byte through the decoder and, if the decoder emits
// it, through the encoder. It never sees the final ".\r\n" (feed stops in
// front of it), so the decoder never reaches its end state here.
func (t *dotRelay) step(c byte, out []byte) []byte {
	switch t.d { // go-smtp's dataReader
	case dBeginLine:
		if c == '.' {
			t.d = dDot
			return out
		}
		if c == '\r' {
			t.d = dCR
		} else {
			t.d = dData
		}
	case dDot:
		if c == '\r' {
			t.d = dDotCR
			return out
		}
		t.d = dData
	case dDotCR:
		// ".\r\n" is the end, found by feed; ".\r" and anything else drops
		// the dot and the CR, as go-smtp does.
		t.d = dData
	case dCR:
		if c == '\n' {
			t.d = dBeginLine
		} else {
			t.d = dData
		}
	case dData:
		if c == '\r' {
			t.d = dCR
		}
	}
	t.n++
	switch t.e { // textproto's dotWriter
	case eBegin, eBeginLine:
		t.e = eData
		if c == '.' {
			out = append(out, '.')
		}
		out = t.encData(c, out)
		return append(out, c)
	case eData:
		out = t.encData(c, out)
	case eCR:
		t.e = eData
		if c == '\n' {
			t.e = eBeginLine
		}
	}
	return append(out, c)
}

func (t *dotRelay) encData(c byte, out []byte) []byte {
	switch c {
	case '\r':
		t.e = eCR
	case '\n':
		out = append(out, '\r')
		t.e = eBeginLine
	}
	return out
}

// holdBack is how many bytes at the end of the output so far must not be
// sent before the end of data, because the final "\r\n.\r\n" (written by
// go-smtp's DotWriter.Close from its initial state) supplies them: the
// writer in the old path would have closed with "\r\n.\r\n" after a
// mid-line byte, "\n.\r\n" after a CR and ".\r\n" at a line start.
func (t *dotRelay) holdBack() int {
	switch t.e {
	case eCR:
		return 1
	case eBeginLine:
		return 2
	}
	return 0
}

// indexCRorLF returns the index of the first '\r' or '\n' in b, or len(b).
func indexCRorLF(b []byte) int {
	k := bytes.IndexByte(b, '\r')
	if k < 0 {
		k = len(b)
	}
	if j := bytes.IndexByte(b[:k], '\n'); j >= 0 {
		return j
	}
	return k
}
