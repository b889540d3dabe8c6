package ldap

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// ErrProtocol marks bytes that are not a well-formed, bounded LDAP message:
// the connection gets a protocolError notice and is closed.
var ErrProtocol = errors.New("ldap: protocol error")

// maxDepth bounds the nesting of constructed BER elements in one message.
// Real LDAP messages nest a few levels (filters a few more); 32 leaves room
// for deep but sane filters.
const maxDepth = 32

// LDAP application tags (RFC 4511 §4.2 ff.).
const (
	tagBindRequest      = 0
	tagBindResponse     = 1
	tagUnbindRequest    = 2
	tagSearchRequest    = 3
	tagSearchEntry      = 4
	tagSearchDone       = 5
	tagModifyRequest    = 6
	tagModifyResponse   = 7
	tagAddRequest       = 8
	tagAddResponse      = 9
	tagDelRequest       = 10
	tagDelResponse      = 11
	tagModDNRequest     = 12
	tagModDNResponse    = 13
	tagCompareRequest   = 14
	tagCompareResponse  = 15
	tagAbandonRequest   = 16
	tagSearchReference  = 19
	tagExtendedRequest  = 23
	tagExtendedResponse = 24
	tagIntermediate     = 25
)

// responseTag maps a request to the tag of its final response; 0 for
// requests without one (unbind, abandon).
func responseTag(req int) int {
	switch req {
	case tagSearchRequest:
		return tagSearchDone
	case tagBindRequest, tagModifyRequest, tagAddRequest, tagDelRequest,
		tagModDNRequest, tagCompareRequest:
		return req + 1
	case tagExtendedRequest:
		return tagExtendedResponse
	}
	return 0
}

// message is one LDAPMessage, kept as its raw bytes plus the offsets of its
// parts, so that forwarding re-uses the bytes instead of re-encoding.
type message struct {
	raw      []byte
	id       int64
	tag      int    // application tag of the protocolOp
	op       []byte // raw protocolOp TLV
	controls []byte // raw [0] Controls TLV, nil if absent
}

// readPDU reads one BER element that must be a SEQUENCE of at most max
// bytes of content. The length is read and checked before anything is
// allocated; indefinite lengths (forbidden by RFC 4511 §5.1) are refused.
func readPDU(r *bufio.Reader, max int) ([]byte, error) {
	b0, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if b0 != 0x30 {
		return nil, fmt.Errorf("%w: message is not a SEQUENCE (0x%02x)", ErrProtocol, b0)
	}
	var hdr [6]byte
	hdr[0] = b0
	n := 1
	l, err := r.ReadByte()
	if err != nil {
		return nil, unexpected(err)
	}
	hdr[n] = l
	n++
	length := int(l)
	if l&0x80 != 0 {
		k := int(l & 0x7f)
		if k == 0 || k > 4 {
			return nil, fmt.Errorf("%w: unsupported length form 0x%02x", ErrProtocol, l)
		}
		length = 0
		for range k {
			c, err := r.ReadByte()
			if err != nil {
				return nil, unexpected(err)
			}
			hdr[n] = c
			n++
			length = length<<8 | int(c)
		}
	}
	if length > max || length < 0 {
		return nil, fmt.Errorf("%w: message of %d bytes exceeds %d", ErrProtocol, length, max)
	}
	buf := make([]byte, n+length)
	copy(buf, hdr[:n])
	if _, err := io.ReadFull(r, buf[n:]); err != nil {
		return nil, unexpected(err)
	}
	return buf, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated message", ErrProtocol)
	}
	return err
}

// tlv splits the first BER element off b: its identifier byte, its content
// and the bytes after it. Only low tag numbers and definite lengths of up to
// four bytes are accepted (all LDAP needs).
func tlv(b []byte) (id byte, content, whole, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, nil, fmt.Errorf("%w: short element", ErrProtocol)
	}
	id = b[0]
	if id&0x1f == 0x1f {
		return 0, nil, nil, nil, fmt.Errorf("%w: high tag number", ErrProtocol)
	}
	l, n := int(b[1]), 2
	if l&0x80 != 0 {
		k := l & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return 0, nil, nil, nil, fmt.Errorf("%w: bad length", ErrProtocol)
		}
		l = 0
		for _, c := range b[2 : 2+k] {
			l = l<<8 | int(c)
		}
		n += k
	}
	if l < 0 || l > len(b)-n {
		return 0, nil, nil, nil, fmt.Errorf("%w: length %d beyond the message", ErrProtocol, l)
	}
	return id, b[n : n+l], b[:n+l], b[n+l:], nil
}

// validate walks every element of b and checks lengths and nesting depth,
// so the decoder never sees malformed or deeply nested input.
func validate(b []byte, depth int) error {
	for len(b) > 0 {
		id, content, _, rest, err := tlv(b)
		if err != nil {
			return err
		}
		if id&0x20 != 0 {
			if depth+1 > maxDepth {
				return fmt.Errorf("%w: nesting deeper than %d", ErrProtocol, maxDepth)
			}
			if err := validate(content, depth+1); err != nil {
				return err
			}
		}
		b = rest
	}
	return nil
}

// parseMessage splits a PDU read by readPDU into its parts. deep also
// validates every nested element (for untrusted input); the upstream's
// messages are only split at the top level.
func parseMessage(raw []byte, deep bool) (*message, error) {
	_, body, _, rest, err := tlv(raw)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrProtocol)
	}
	if deep {
		if err := validate(body, 1); err != nil {
			return nil, err
		}
	}
	id, idv, _, body, err := tlv(body)
	if err != nil {
		return nil, err
	}
	if id != 0x02 || len(idv) == 0 || len(idv) > 4 || idv[0]&0x80 != 0 {
		return nil, fmt.Errorf("%w: bad messageID", ErrProtocol)
	}
	m := &message{raw: raw}
	for _, c := range idv {
		m.id = m.id<<8 | int64(c)
	}
	opID, _, op, body, err := tlv(body)
	if err != nil {
		return nil, err
	}
	if opID&0xc0 != 0x40 {
		return nil, fmt.Errorf("%w: protocolOp is not an application tag", ErrProtocol)
	}
	m.tag, m.op = int(opID&0x1f), op
	if len(body) > 0 {
		cid, _, ctl, after, err := tlv(body)
		if err != nil {
			return nil, err
		}
		if cid != 0xa0 || len(after) != 0 {
			return nil, fmt.Errorf("%w: unexpected element after protocolOp", ErrProtocol)
		}
		m.controls = ctl
	}
	return m, nil
}

// readMessage reads, bounds, validates and splits one client message.
func readMessage(r *bufio.Reader, max int) (*message, error) {
	raw, err := readPDU(r, max)
	if err != nil {
		return nil, err
	}
	return parseMessage(raw, true)
}

// decode turns a validated element into a ber.Packet.
func decode(b []byte) (*ber.Packet, error) {
	p, err := ber.DecodePacketErr(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return p, nil
}

// appendLength appends a BER definite length.
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// appendInt appends a BER INTEGER of a non-negative value.
func appendInt(b []byte, v int64) []byte {
	var tmp [9]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte(v)
		v >>= 8
		if v == 0 {
			break
		}
	}
	if tmp[i]&0x80 != 0 {
		i--
		tmp[i] = 0
	}
	b = append(b, 0x02, byte(len(tmp)-i))
	return append(b, tmp[i:]...)
}

// envelope builds an LDAPMessage from a message id, a raw protocolOp and raw
// Control elements (without the [0] wrapper); no controls: no wrapper.
func envelope(id int64, op []byte, controls ...[]byte) []byte {
	idb := appendInt(make([]byte, 0, 6), id)
	ctlLen := 0
	for _, c := range controls {
		ctlLen += len(c)
	}
	bodyLen := len(idb) + len(op)
	var ctlHdr []byte
	if len(controls) > 0 {
		ctlHdr = appendLength([]byte{0xa0}, ctlLen)
		bodyLen += len(ctlHdr) + ctlLen
	}
	out := make([]byte, 0, bodyLen+6)
	out = appendLength(append(out, 0x30), bodyLen)
	out = append(out, idb...)
	out = append(out, op...)
	if len(controls) > 0 {
		out = append(out, ctlHdr...)
		for _, c := range controls {
			out = append(out, c...)
		}
	}
	return out
}

// splitControls returns the raw Control elements inside a [0] Controls TLV
// and their OIDs.
func splitControls(ctl []byte) (raws [][]byte, oids []string, err error) {
	if ctl == nil {
		return nil, nil, nil
	}
	_, body, _, _, err := tlv(ctl)
	if err != nil {
		return nil, nil, err
	}
	for len(body) > 0 {
		id, content, whole, rest, err := tlv(body)
		if err != nil {
			return nil, nil, err
		}
		if id != 0x30 {
			return nil, nil, fmt.Errorf("%w: control is not a SEQUENCE", ErrProtocol)
		}
		oidID, oid, _, _, err := tlv(content)
		if err != nil || oidID != 0x04 {
			return nil, nil, fmt.Errorf("%w: bad control type", ErrProtocol)
		}
		raws = append(raws, whole)
		oids = append(oids, string(oid))
		body = rest
	}
	return raws, oids, nil
}
