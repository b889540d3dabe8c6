// Package proxyproto reads the PROXY protocol header (versions 1 and 2, as
// HAProxy's proxy-protocol.txt defines them) that a load balancer puts in
// front of a connection to name the real client, and wraps a listener so
// that connections from trusted balancers report that client as their
// RemoteAddr. Parsing is strict and bounded: a v1 header is one line of at
// most 107 bytes, a v2 header at most maxV2 bytes, and nothing is read past
// the header (the protocol, TLS included, starts right after it).
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// ErrInvalid wraps every malformed header.
var ErrInvalid = errors.New("proxyproto: invalid header")

// Header is a decoded PROXY header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local is set for a v2 LOCAL command or a v1 "UNKNOWN" line (health
	// checks of the balancer itself): the connection's own addresses apply
	// and Source and Dest are zero.
	Local bool
	// Source is the client, Dest the address it connected to (TCP over
	// IPv4 or IPv6).
	Source, Dest netip.AddrPort
}

const (
	maxV1 = 107 // "PROXY TCP6 " + two 39-byte addresses + two ports + CRLF
	// maxV2 bounds a v2 header: 16 bytes, the addresses (216 at most, for
	// AF_UNIX) and room for the usual TLVs.
	maxV2 = 16 + 1024
)

// v2sig is the v2 signature; v1 headers start with "PROXY ".
var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Read reads one header from r, byte-exactly: it never reads past the
// header's end, so r can be a connection handed on afterwards.
func Read(r io.Reader) (Header, error) {
	var head [16]byte
	// 12 bytes: the v2 signature, or the start of a v1 line (at least 15).
	if _, err := io.ReadFull(r, head[:12]); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if bytes.Equal(head[:12], v2sig) {
		if _, err := io.ReadFull(r, head[12:16]); err != nil {
			return Header{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		n := int(binary.BigEndian.Uint16(head[14:16]))
		if 16+n > maxV2 {
			return Header{}, fmt.Errorf("%w: v2 length %d too big", ErrInvalid, n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return Header{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return parseV2(head[12], head[13], body)
	}
	if !bytes.HasPrefix(head[:12], []byte("PROXY ")) {
		return Header{}, fmt.Errorf("%w: no PROXY signature", ErrInvalid)
	}
	line := make([]byte, 12, maxV1)
	copy(line, head[:12])
	var b [1]byte
	for !bytes.HasSuffix(line, []byte("\r\n")) {
		if len(line) == maxV1 {
			return Header{}, fmt.Errorf("%w: v1 line longer than %d bytes", ErrInvalid, maxV1)
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		line = append(line, b[0])
	}
	return parseV1(string(line[:len(line)-2]))
}

// parseV1 parses "PROXY TCP4|TCP6 src dst sport dport" or "PROXY UNKNOWN
// ..." (without CRLF).
func parseV1(line string) (Header, error) {
	f := strings.Split(line, " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return Header{Version: 1, Local: true}, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return Header{}, fmt.Errorf("%w: v1 %q", ErrInvalid, line)
	}
	src, err1 := v1Addr(f[2], f[4], f[1] == "TCP4")
	dst, err2 := v1Addr(f[3], f[5], f[1] == "TCP4")
	if err := errors.Join(err1, err2); err != nil {
		return Header{}, fmt.Errorf("%w: v1: %w", ErrInvalid, err)
	}
	return Header{Version: 1, Source: src, Dest: dst}, nil
}

func v1Addr(ip, port string, v4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" || a.Is4() != v4 || (!v4 && a.Is4In6()) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", ip)
	}
	// Ports: decimal 0-65535, no sign, no leading zero (the spec's form).
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || port == "" || (len(port) > 1 && port[0] == '0') {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// parseV2 parses the version/command byte, the family/protocol byte and
// the body of a v2 header.
func parseV2(verCmd, famProto byte, body []byte) (Header, error) {
	if verCmd>>4 != 2 {
		return Header{}, fmt.Errorf("%w: v2 version %d", ErrInvalid, verCmd>>4)
	}
	switch verCmd & 0xf {
	case 0: // LOCAL: the body (if any) is ignored
		return Header{Version: 2, Local: true}, nil
	case 1: // PROXY
	default:
		return Header{}, fmt.Errorf("%w: v2 command %d", ErrInvalid, verCmd&0xf)
	}
	var n int
	switch famProto {
	case 0x11: // TCP over IPv4
		n = 12
	case 0x21: // TCP over IPv6
		n = 36
	case 0x00: // UNSPEC: the balancer does not know; keep the peer's
		return Header{Version: 2, Local: true}, nil
	default:
		return Header{}, fmt.Errorf("%w: v2 family/protocol %#x not supported", ErrInvalid, famProto)
	}
	if len(body) < n {
		return Header{}, fmt.Errorf("%w: v2 addresses truncated", ErrInvalid)
	}
	var src, dst netip.Addr
	var ports []byte
	if n == 12 {
		src = netip.AddrFrom4([4]byte(body[0:4]))
		dst = netip.AddrFrom4([4]byte(body[4:8]))
		ports = body[8:12]
	} else {
		src = netip.AddrFrom16([16]byte(body[0:16]))
		dst = netip.AddrFrom16([16]byte(body[16:32]))
		ports = body[32:36]
	}
	if err := checkTLVs(body[n:]); err != nil {
		return Header{}, err
	}
	return Header{Version: 2,
		Source: netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports[0:2])),
		Dest:   netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ports[2:4])),
	}, nil
}

// checkTLVs checks that what follows the addresses is a well-formed list of
// type-length-value records (their contents are not used).
func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return fmt.Errorf("%w: v2 TLV truncated", ErrInvalid)
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return fmt.Errorf("%w: v2 TLV length %d past the end", ErrInvalid, n)
		}
		b = b[3+n:]
	}
	return nil
}
