package ldap_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// Hand-built BER for the differential tests: tl wraps parts in one
// element with an arbitrary identifier, so every field can get an odd tag.
func tl(id byte, parts ...[]byte) []byte {
	var content []byte
	for _, p := range parts {
		content = append(content, p...)
	}
	return append(lenHdr(id, len(content)), content...)
}

func lenHdr(id byte, n int) []byte {
	switch {
	case n < 0x80:
		return []byte{id, byte(n)}
	case n < 0x100:
		return []byte{id, 0x81, byte(n)}
	}
	return []byte{id, 0x82, byte(n >> 8), byte(n)}
}

func str(id byte, s string) []byte { return tl(id, []byte(s)) }
func num(id byte, v byte) []byte   { return []byte{id, 1, v} }

// pdu is an LDAPMessage with message ID id around op and optional raw
// Control elements.
func pdu(id byte, op []byte, ctls ...[]byte) []byte {
	parts := [][]byte{num(0x02, id), op}
	if len(ctls) > 0 {
		parts = append(parts, tl(0xa0, ctls...))
	}
	return tl(0x30, parts...)
}

// ctl is a raw Control.
func ctl(oid string, critical bool, value []byte) []byte {
	parts := [][]byte{str(0x04, oid)}
	if critical {
		parts = append(parts, []byte{0x01, 1, 0xff})
	}
	if value != nil {
		parts = append(parts, tl(0x04, value))
	}
	return tl(0x30, parts...)
}

// searchOp is a SearchRequest from raw fields, so a test can give any of
// them an odd identifier.
func searchOp(base, scope, deref, size, time, types, filter, attrs []byte) []byte {
	return tl(0x63, base, scope, deref, size, time, types, filter, attrs)
}

// goodSearch is a well-formed subtree search of base for (objectClass=*).
func goodSearch(base string) []byte {
	return searchOp(str(0x04, base), num(0x0a, 2), num(0x0a, 0), num(0x02, 0), num(0x02, 0),
		num(0x01, 0), str(0x87, "objectClass"), tl(0x30))
}

// rawConn speaks hand-built PDUs to an LDAP server.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// dialPDU connects to addr; with tc it runs StartTLS first.
func dialPDU(t *testing.T, addr string, tc *tls.Config) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
	if tc != nil {
		res := rc.do(pdu(1, tl(0x77, str(0x80, "1.3.6.1.4.1.1466.20037"))), 1)
		if res.code != 0 {
			t.Fatalf("StartTLS: result %d, want 0", res.code)
		}
		tlsc := tls.Client(nc, tc)
		if err := tlsc.Handshake(); err != nil {
			t.Fatalf("StartTLS handshake: %v", err)
		}
		rc.nc, rc.r = tlsc, bufio.NewReader(tlsc)
	}
	return rc
}

// bind runs a simple bind and fails the test unless it succeeds.
func (rc *rawConn) bind(dn, pw string) {
	rc.t.Helper()
	res := rc.do(pdu(2, tl(0x60, num(0x02, 3), str(0x04, dn), str(0x80, pw))), 2)
	if res.code != 0 {
		rc.t.Fatalf("bind as %s: result %d, want 0", dn, res.code)
	}
}

// outcome is what came back for one request.
type outcome struct {
	entries []string // "dn\x00type\x00value", types lower-cased
	code    int64    // final result code; -1 if none came
	notice  int64    // Notice of Disconnection code; -1 if none
	closed  bool     // the server closed the connection
}

func (o outcome) String() string {
	return fmt.Sprintf("code %d, notice %d, closed %v, %d entry lines", o.code, o.notice, o.closed, len(o.entries))
}

// do sends b and reads responses until the final one for id, a Notice of
// Disconnection, the connection's end, or two seconds of silence.
func (rc *rawConn) do(b []byte, id int64) outcome {
	rc.t.Helper()
	out := outcome{code: -1, notice: -1}
	rc.nc.SetWriteDeadline(time.Now().Add(3 * time.Second))
	if _, err := rc.nc.Write(b); err != nil {
		out.closed = true
		return out
	}
	for {
		rc.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		p, err := ber.ReadPacket(rc.r)
		if err != nil {
			var ne net.Error
			out.closed = !(errors.As(err, &ne) && ne.Timeout())
			return out
		}
		if len(p.Children) < 2 {
			continue
		}
		mid, _ := p.Children[0].Value.(int64)
		op := p.Children[1]
		switch {
		case mid == 0 && op.Tag == 24 && len(op.Children) > 0:
			out.notice, _ = op.Children[0].Value.(int64)
		case mid != id:
		case op.Tag == 4 && len(op.Children) >= 2: // SearchResultEntry
			dn := strings.ToLower(string(op.Children[0].ByteValue))
			for _, a := range op.Children[1].Children {
				if len(a.Children) < 2 {
					continue
				}
				typ := strings.ToLower(string(a.Children[0].ByteValue))
				for _, v := range a.Children[1].Children {
					out.entries = append(out.entries, dn+"\x00"+typ+"\x00"+string(v.ByteValue))
				}
				if len(a.Children[1].Children) == 0 { // typesOnly
					out.entries = append(out.entries, dn+"\x00"+typ)
				}
			}
			out.entries = append(out.entries, dn)
		case op.Tag == 19, op.Tag == 25: // reference, intermediate
		default:
			if len(op.Children) > 0 {
				out.code, _ = op.Children[0].Value.(int64)
			}
			return out
		}
	}
}
