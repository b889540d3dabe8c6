package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a v2 header.
func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte{}, v2sig...)
	b = append(b, 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:16], uint16(len(body)))
	return append(b, body...)
}

func v2tcp4(tlvs ...byte) []byte {
	body := []byte{192, 0, 2, 7, 10, 0, 0, 1, 0xc8, 0x32, 0x00, 0x8f} // 51250 → 143
	return v2(1, 0x11, append(body, tlvs...))
}

func v2tcp6() []byte {
	src := netip.MustParseAddr("2001:db8::7").As16()
	dst := netip.MustParseAddr("2001:db8::1").As16()
	body := append(append(src[:], dst[:]...), 0x01, 0xbb, 0x03, 0xe1) // 443 → 993
	return v2(1, 0x21, body)
}

func TestRead(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		in   []byte
		want Header
		err  bool
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 10.0.0.1 51250 143\r\n"), Header{Version: 1, Source: ap("192.0.2.7:51250"), Dest: ap("10.0.0.1:143")}, false},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 443 993\r\n"), Header{Version: 1, Source: ap("[2001:db8::7]:443"), Dest: ap("[2001:db8::1]:993")}, false},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}, false},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"), Header{Version: 1, Local: true}, false},
		{"v2 tcp4", v2tcp4(), Header{Version: 2, Source: ap("192.0.2.7:51250"), Dest: ap("10.0.0.1:143")}, false},
		{"v2 tcp4 with TLVs", v2tcp4(0x04, 0, 2, 0, 0, 0x01, 0, 3, 'i', 'm', 'a'), Header{Version: 2, Source: ap("192.0.2.7:51250"), Dest: ap("10.0.0.1:143")}, false},
		{"v2 tcp6", v2tcp6(), Header{Version: 2, Source: ap("[2001:db8::7]:443"), Dest: ap("[2001:db8::1]:993")}, false},
		{"v2 local", v2(0, 0x00, nil), Header{Version: 2, Local: true}, false},
		{"v2 unspec", v2(1, 0x00, nil), Header{Version: 2, Local: true}, false},

		{"no signature", []byte("a LOGIN alice secret\r\n"), Header{}, true},
		{"empty", nil, Header{}, true},
		{"v1 lower case", []byte("proxy TCP4 192.0.2.7 10.0.0.1 1 2\r\n"), Header{}, true},
		{"v1 bare LF", []byte("PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n"), Header{}, true},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), Header{}, true},
		{"v1 double space", []byte("PROXY TCP4  192.0.2.7 10.0.0.1 1 2\r\n"), Header{}, true},
		{"v1 tcp4 with v6", []byte("PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n"), Header{}, true},
		{"v1 tcp6 with v4", []byte("PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n"), Header{}, true},
		{"v1 tcp6 v4-mapped", []byte("PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1 2\r\n"), Header{}, true},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n"), Header{}, true},
		{"v1 port too big", []byte("PROXY TCP4 192.0.2.7 10.0.0.1 65536 2\r\n"), Header{}, true},
		{"v1 port leading zero", []byte("PROXY TCP4 192.0.2.7 10.0.0.1 0143 2\r\n"), Header{}, true},
		{"v1 port sign", []byte("PROXY TCP4 192.0.2.7 10.0.0.1 +1 2\r\n"), Header{}, true},
		{"v1 extra field", []byte("PROXY TCP4 192.0.2.7 10.0.0.1 1 2 3\r\n"), Header{}, true},
		{"v1 truncated", []byte("PROXY TCP4 192.0.2.7 10.0"), Header{}, true},
		{"v1 UDP", []byte("PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n"), Header{}, true},
		{"v2 version 1", append(append([]byte{}, v2sig...), 0x11, 0x11, 0, 0), Header{}, true},
		{"v2 command 2", v2(2, 0x11, make([]byte, 12)), Header{}, true},
		{"v2 udp", v2(1, 0x12, make([]byte, 12)), Header{}, true},
		{"v2 unix", v2(1, 0x31, make([]byte, 216)), Header{}, true},
		{"v2 short addresses", v2(1, 0x11, make([]byte, 11)), Header{}, true},
		{"v2 TLV past the end", v2tcp4(0x04, 0, 9, 0), Header{}, true},
		{"v2 TLV truncated", v2tcp4(0x04, 0), Header{}, true},
		{"v2 too long", v2(1, 0x11, make([]byte, maxV2)), Header{}, true},
		{"v2 truncated body", v2tcp4()[:20], Header{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What follows the header must stay unread.
			r := bytes.NewReader(append(append([]byte{}, tt.in...), "NEXT"...))
			got, err := Read(r)
			if tt.err {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %+v, %v; want an ErrInvalid", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %+v", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "NEXT" {
				t.Errorf("after the header: got %q, want NEXT (nothing read past it)", rest)
			}
		})
	}
}

// FuzzRead: Read never reads past the bound of its version, never panics,
// and a v1 header it accepts re-encodes to a line that decodes to the same
// header (IPv6 text may differ: "0::" and "::" are one address).
func FuzzRead(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.7 10.0.0.1 51250 143\r\n"),
		[]byte("PROXY TCP6 2001:db8::7 2001:db8::1 443 993\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		v2tcp4(), v2tcp6(), v2(0, 0, nil), v2tcp4(0x04, 0, 2, 0, 0),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := Read(r)
		used := len(in) - r.Len()
		if used > maxV2 {
			t.Fatalf("read %d bytes, more than any header", used)
		}
		if err != nil {
			return
		}
		if h.Version == 1 {
			if used > maxV1 {
				t.Fatalf("v1 header of %d bytes", used)
			}
			if !h.Local {
				proto := "TCP4"
				if h.Source.Addr().Is6() {
					proto = "TCP6"
				}
				re := "PROXY " + proto + " " + h.Source.Addr().String() + " " + h.Dest.Addr().String() + " " +
					itoa(h.Source.Port()) + " " + itoa(h.Dest.Port()) + "\r\n"
				h2, err := Read(strings.NewReader(re))
				if err != nil || h2 != h {
					t.Fatalf("read %q as %+v, re-encoded %q, decoded again %+v, %v", in[:used], h, re, h2, err)
				}
			}
		}
		if !h.Local && (!h.Source.IsValid() || !h.Dest.IsValid()) {
			t.Fatalf("accepted header without addresses: %+v", h)
		}
	})
}

func itoa(p uint16) string {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + p%10)
		p /= 10
		if p == 0 {
			return string(b[i:])
		}
	}
}
