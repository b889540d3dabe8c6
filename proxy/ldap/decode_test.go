package ldap

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// reencode builds the message Legate would send for r: the re-encoded
// protocolOp and controls, under r's message ID.
func reencode(r *request) []byte {
	var ctls [][]byte
	for _, c := range r.controls {
		ctls = append(ctls, encodeControl(c))
	}
	return envelope(r.id, encodeOp(r), ctls...)
}

func decodeBytes(b []byte) (*request, error) {
	m, err := readMessage(bufio.NewReader(bytes.NewReader(b)), 1<<20)
	if err != nil {
		return nil, err
	}
	return decodeRequest(m)
}

// FuzzRoundTrip: whatever the decoder accepts re-encodes to bytes that
// decode to the same request, and re-encode to the same bytes.
func FuzzRoundTrip(f *testing.F) {
	f.Add(envelope(1, bindRequestOp("uid=alice,dc=example", "pw")))
	f.Fuzz(func(t *testing.T, b []byte) {
		r1, err := decodeBytes(b)
		if err != nil {
			return
		}
		enc1 := reencode(r1)
		r2, err := decodeBytes(enc1)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v\n% x", err, enc1)
		}
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("round trip changed the request:\n got %+v\nwant %+v", r2, r1)
		}
		if enc2 := reencode(r2); !bytes.Equal(enc1, enc2) {
			t.Fatalf("second encoding differs:\n% x\n% x", enc2, enc1)
		}
	})
}

// TestSeedsDecode: the seed corpus holds both accepted and refused PDUs,
// and the accepted ones are not re-encoded byte for byte when the client
// used a long-form length (Legate never forwards the client's bytes).
func TestSeedsDecode(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzRoundTrip/*")
	if len(files) < 10 {
		t.Fatalf("got %d seeds, want at least 10", len(files))
	}
	want := map[string]bool{"search_base_ctx_tag": false, "search_nul_oid": false, "trailing_in_filter": false,
		"search_eq": true, "search_complex": true, "search_paged_sort": true, "bind_long_form": true, "passwd_modify": true}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b := seedBytes(t, string(raw))
		r, err := decodeBytes(b)
		name := filepath.Base(f)
		if ok, listed := want[name]; listed && ok != (err == nil) {
			t.Errorf("%s: got error %v, want accepted %v", name, err, ok)
		}
		if name == "bind_long_form" && err == nil && bytes.Equal(reencode(r), b) {
			t.Errorf("bind_long_form: re-encoding kept the client's long-form length")
		}
	}
}

// seedBytes parses a `go test fuzz v1` file with one []byte("...") value
// written with \xNN escapes only.
func seedBytes(t *testing.T, s string) []byte {
	t.Helper()
	_, lit, ok := strings.Cut(s, "[]byte(\"")
	lit, _, ok2 := strings.Cut(lit, "\")")
	if !ok || !ok2 {
		t.Fatalf("bad seed %q", s)
	}
	var out []byte
	for len(lit) >= 4 && lit[:2] == `\x` {
		var v byte
		for _, c := range lit[2:4] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'a') + 10
			}
		}
		out = append(out, v)
		lit = lit[4:]
	}
	return out
}

func TestValidNumericOID(t *testing.T) {
	for s, want := range map[string]bool{
		"1.2.840.113556.1.4.319": true, "0.9": true, "2.16.840.1.113730.3.4.18": true,
		"": false, "1": false, "1.": false, ".1": false, "1..2": false, "01.2": false, "1.02": false,
		"1.2 ": false, " 1.2": false, "1.2\x00": false, "1.2.a": false, "cn": false,
	} {
		if got := validNumericOID(s); got != want {
			t.Errorf("validNumericOID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestValidAttrDesc(t *testing.T) {
	for s, want := range map[string]bool{
		"cn": true, "CN;lang-en": true, "2.5.4.3": true, "msDS-UserAccount": true, "cn;binary;x-1": true,
		"": false, "1cn": false, "cn;": false, "cn;;x": false, "c n": false, "cn\x00": false, "cn_x": false, "2.5.04.3": false,
	} {
		if got := validAttrDesc(s); got != want {
			t.Errorf("validAttrDesc(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestBindDNLimit (#18.1): a bind name over maxBindDN bytes is a protocol
// error in the decoder; one at the limit decodes.
func TestBindDNLimit(t *testing.T) {
	at := envelope(1, bindRequestOp(strings.Repeat("a", maxBindDN), "pw"))
	if _, err := decodeBytes(at); err != nil {
		t.Errorf("name of %d bytes: got %v, want accepted", maxBindDN, err)
	}
	over := envelope(1, bindRequestOp(strings.Repeat("a", maxBindDN+1), "pw"))
	if _, err := decodeBytes(over); !errors.Is(err, ErrProtocol) {
		t.Errorf("name of %d bytes: got %v, want ErrProtocol", maxBindDN+1, err)
	}
}
