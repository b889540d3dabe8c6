package ldap

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
)

func TestReadMessage(t *testing.T) {
	good := envelope(7, bindRequestOp("uid=alice,ou=people,dc=example,dc=com", "secret"), proxiedAuthzControl("dn:x"))
	deep := bytes.Repeat([]byte{0x30, 0x80}, 40) // indefinite and deep
	nested := func(n int) []byte {
		b := []byte{0x04, 0x00}
		for range n {
			b = append(appendLength([]byte{0x30}, len(b)), b...)
		}
		return envelope(1, append(appendLength([]byte{0x63}, len(b)), b...))
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		wantID  int64
		wantTag int
	}{
		{"bind", good, nil, 7, tagBindRequest},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), ErrProtocol, 0, 0},
		{"truncated", good[:len(good)-3], ErrProtocol, 0, 0},
		{"huge length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02}, ErrProtocol, 0, 0},
		{"five length bytes", []byte{0x30, 0x85, 1, 0, 0, 0, 0}, ErrProtocol, 0, 0},
		{"indefinite", []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x42, 0x00, 0x00, 0x00}, ErrProtocol, 0, 0},
		{"deep indefinite", append([]byte{0x30, 0x50}, deep...), ErrProtocol, 0, 0},
		{"nested 20", nested(20), nil, 1, tagSearchRequest},
		{"nested 40", nested(40), ErrProtocol, 0, 0},
		{"inner length overflow", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x42, 0x09}, ErrProtocol, 0, 0},
		{"negative id", []byte{0x30, 0x05, 0x02, 0x01, 0x80, 0x42, 0x00}, ErrProtocol, 0, 0},
		{"no op", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, ErrProtocol, 0, 0},
		{"universal op", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x04, 0x00}, ErrProtocol, 0, 0},
		{"unbind", []byte{0x30, 0x05, 0x02, 0x01, 0x03, 0x42, 0x00}, nil, 3, tagUnbindRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := readMessage(bufio.NewReader(bytes.NewReader(tc.in)), 1<<20)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if m.id != tc.wantID || m.tag != tc.wantTag {
				t.Errorf("got id %d tag %d, want %d %d", m.id, m.tag, tc.wantID, tc.wantTag)
			}
		})
	}
}

func TestReadMessageMaxPDU(t *testing.T) {
	big := envelope(1, bindRequestOp(strings.Repeat("x", 5000), "pw"))
	if _, err := readMessage(bufio.NewReader(bytes.NewReader(big)), 4096); !errors.Is(err, ErrProtocol) {
		t.Errorf("got %v, want ErrProtocol for a %d-byte message over a 4096 limit", err, len(big))
	}
	if _, err := readMessage(bufio.NewReader(bytes.NewReader(big)), 8192); err != nil {
		t.Errorf("got %v, want nil under the limit", err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, id := range []int64{0, 1, 127, 128, 255, 256, 65535, 1<<31 - 1} {
		ctl := proxiedAuthzControl("dn:uid=alice")
		raw := envelope(id, extendedRequestOp(oidWhoAmI), ctl)
		m, err := parseMessage(raw, true)
		if err != nil {
			t.Fatalf("id %d: %v", id, err)
		}
		if m.id != id || m.tag != tagExtendedRequest {
			t.Errorf("got id %d tag %d, want %d %d", m.id, m.tag, id, tagExtendedRequest)
		}
		raws, oids, err := splitControls(m.controls)
		if err != nil || len(oids) != 1 || oids[0] != oidProxiedAuthz || !bytes.Equal(raws[0], ctl) {
			t.Errorf("controls: got %q %v, want [%s]", oids, err, oidProxiedAuthz)
		}
	}
	code, diag, err := resultCode(resultOp(tagBindResponse, resultBusy, "slow down"))
	if err != nil || code != resultBusy || diag != "slow down" {
		t.Errorf("resultCode: got %d %q %v, want 51 \"slow down\"", code, diag, err)
	}
}

func TestAttrFilter(t *testing.T) {
	f := newAttrFilter([]string{"CN", "mail"})
	entry := entryOp("cn=x,dc=example", "cn", "x", "userPassword", "s", "mail;lang-en", "x@example")
	out, err := f.apply(entry)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := decode(out)
	var got []string
	for _, a := range p.Children[1].Children {
		got = append(got, string(a.Children[0].ByteValue))
	}
	if strings.Join(got, ",") != "cn,mail;lang-en" {
		t.Errorf("got attributes %v, want [cn mail;lang-en]", got)
	}
}

// FuzzReadMessage feeds arbitrary bytes to the client-message reader and
// the request decoders: no panic, no unbounded allocation.
func FuzzReadMessage(f *testing.F) {
	f.Add(envelope(1, bindRequestOp("uid=alice,dc=example", "pw")))
	f.Add(envelope(2, extendedRequestOp(oidStartTLS)))
	f.Add([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff})
	f.Add(bytes.Repeat([]byte{0x30, 0x80}, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for range 4 {
			m, err := readMessage(r, 1<<16)
			if err != nil {
				return
			}
			if p, err := decode(m.op); err == nil {
				_ = p.Children
			}
			_, _, _ = splitControls(m.controls)
			_, _, _ = resultCode(m.op)
			_, _ = newAttrFilter([]string{"cn"}).apply(m.op)
			if r, err := decodeRequest(m); err == nil {
				_ = encodeOp(r)
				_, _ = filterControls(r)
			}
		}
	})
}

// entryOp encodes a SearchResultEntry with one value per attribute, from
// type/value pairs.
func entryOp(dn string, kv ...string) []byte {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tagSearchEntry, nil, "")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for i := 0; i+1 < len(kv); i += 2 {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, kv[i], ""))
		vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
		vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, kv[i+1], ""))
		a.AppendChild(vals)
		list.AppendChild(a)
	}
	p.AppendChild(list)
	return p.Bytes()
}

func TestResponseTag(t *testing.T) {
	tests := map[int]int{tagBindRequest: tagBindResponse, tagSearchRequest: tagSearchDone,
		tagModifyRequest: tagModifyResponse, tagAddRequest: tagAddResponse, tagDelRequest: tagDelResponse,
		tagModDNRequest: tagModDNResponse, tagCompareRequest: tagCompareResponse,
		tagExtendedRequest: tagExtendedResponse, tagUnbindRequest: 0, tagAbandonRequest: 0}
	for req, want := range tests {
		if got := responseTag(req); got != want {
			t.Errorf("responseTag(%d) = %d, want %d", req, got, want)
		}
	}
}
