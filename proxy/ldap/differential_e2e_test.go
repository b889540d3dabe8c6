package ldap_test

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	ldapproxy "github.com/legate-proxy/legate/proxy/ldap"
	"github.com/legate-proxy/legate/store"
)

// baseline is everything an identity can read directly from slapd: the
// root DSE, the subschema entry and the whole DIT, all attributes.
func baseline(t *testing.T, e *env, dn, pw string) map[string]bool {
	t.Helper()
	c := e.slapd.Conn(t, "", "")
	if err := c.StartTLS(e.slapd.TLS.Clone()); err != nil { // supportedSASLMechanisms differ over TLS
		t.Fatal(err)
	}
	if dn != "" {
		if err := c.Bind(dn, pw); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, q := range []struct {
		base  string
		scope int
	}{{"", ldap.ScopeBaseObject}, {"cn=Subschema", ldap.ScopeBaseObject}, {e.slapd.BaseDN, ldap.ScopeWholeSubtree}} {
		res, err := c.Search(ldap.NewSearchRequest(q.base, q.scope, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{"*", "+"}, nil))
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) && !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
			t.Fatalf("baseline search of %q as %q: %v", q.base, dn, err)
		}
		if res == nil {
			continue
		}
		for _, en := range res.Entries {
			d := strings.ToLower(en.DN)
			seen[d] = true
			for _, a := range en.Attributes {
				typ := strings.ToLower(a.Name)
				seen[d+"\x00"+typ] = true
				for _, v := range a.ByteValues {
					seen[d+"\x00"+typ+"\x00"+string(v)] = true
				}
			}
		}
	}
	return seen
}

type rawCase struct {
	name  string
	pdu   []byte
	proto bool // Legate must answer protocolError with a Notice of Disconnection
}

// rawCases are hand-built PDUs with message ID 5: odd tags for every field,
// bad OIDs, length forms, trailing bytes, DN and filter edge cases.
func rawCases(base string) []rawCase {
	people := "ou=people," + base
	alice := "uid=alice," + people
	f := struct{ base, scope, deref, size, time, types, filter, attrs []byte }{
		str(0x04, base), num(0x0a, 2), num(0x0a, 0), num(0x02, 0), num(0x02, 0), num(0x01, 0), str(0x87, "objectClass"), tl(0x30),
	}
	search := func(mod func(*struct{ base, scope, deref, size, time, types, filter, attrs []byte })) []byte {
		g := f
		mod(&g)
		return pdu(5, searchOp(g.base, g.scope, g.deref, g.size, g.time, g.types, g.filter, g.attrs))
	}
	rootDSE := func(ctls ...[]byte) []byte {
		return pdu(5, searchOp(str(0x04, ""), num(0x0a, 0), num(0x0a, 0), num(0x02, 0), num(0x02, 0), num(0x01, 0),
			str(0x87, "objectClass"), tl(0x30, str(0x04, "+"))), ctls...)
	}
	type fields = struct{ base, scope, deref, size, time, types, filter, attrs []byte }
	paged := tl(0x30, num(0x02, 2), str(0x04, ""))
	proxied := "2.16.840.1.113730.3.4.18"
	return []rawCase{
		// #13.1: the root-DSE confusion, and an odd tag for every field.
		{"base [0] scope OCTET STRING", search(func(g *fields) { g.base, g.scope = str(0x80, base), str(0x04, "\x02") }), true},
		{"empty base scope OCTET STRING", search(func(g *fields) { g.base, g.scope = str(0x04, ""), str(0x04, "\x02") }), true},
		{"base [0]", search(func(g *fields) { g.base = str(0x80, base) }), true},
		{"scope INTEGER", search(func(g *fields) { g.scope = num(0x02, 2) }), true},
		{"scope 3", search(func(g *fields) { g.scope = num(0x0a, 3) }), true},
		{"deref INTEGER", search(func(g *fields) { g.deref = num(0x02, 0) }), true},
		{"sizeLimit ENUMERATED", search(func(g *fields) { g.size = num(0x0a, 0) }), true},
		{"sizeLimit negative", search(func(g *fields) { g.size = num(0x02, 0xff) }), true},
		{"timeLimit not minimal", search(func(g *fields) { g.time = []byte{0x02, 2, 0, 5} }), true},
		{"typesOnly INTEGER", search(func(g *fields) { g.types = num(0x02, 0) }), true},
		{"filter OCTET STRING", search(func(g *fields) { g.filter = str(0x04, "objectClass") }), true},
		{"filter present constructed", search(func(g *fields) { g.filter = tl(0xa7, str(0x04, "objectClass")) }), true},
		{"filter equality primitive", search(func(g *fields) { g.filter = str(0x83, "uid") }), true},
		{"attributes SET", search(func(g *fields) { g.attrs = tl(0x31) }), true},
		{"attribute [0]", search(func(g *fields) { g.attrs = tl(0x30, str(0x80, "cn")) }), true},
		{"trailing bytes in search", pdu(5, tl(0x63, f.base, f.scope, f.deref, f.size, f.time, f.types, f.filter, f.attrs, str(0x04, ""))), true},
		{"trailing bytes in filter", search(func(g *fields) { g.filter = tl(0xa3, str(0x04, "uid"), str(0x04, "alice"), str(0x04, "x")) }), true},
		{"indefinite length filter", search(func(g *fields) {
			g.filter = append(append([]byte{0xa0, 0x80}, str(0x87, "uid")...), 0, 0)
		}), true},
		{"NUL in base", search(func(g *fields) { g.base = str(0x04, people+"\x00,ou=projects,"+base) }), true},
		{"invalid UTF-8 in base", search(func(g *fields) { g.base = str(0x04, "ou=\xff,"+base) }), true},
		{"NUL in filter attribute", search(func(g *fields) { g.filter = tl(0xa3, str(0x04, "uid\x00x"), str(0x04, "alice")) }), true},
		{"space in filter attribute", search(func(g *fields) { g.filter = tl(0xa3, str(0x04, "uid "), str(0x04, "alice")) }), true},
		{"initial substring after any", search(func(g *fields) {
			g.filter = tl(0xa4, str(0x04, "uid"), tl(0x30, str(0x81, "l"), str(0x80, "a")))
		}), true},
		{"no substrings", search(func(g *fields) { g.filter = tl(0xa4, str(0x04, "uid"), tl(0x30)) }), true},
		{"extensible without rule or type", search(func(g *fields) { g.filter = tl(0xa9, str(0x83, "x")) }), true},
		{"not with two filters", search(func(g *fields) { g.filter = tl(0xa2, str(0x87, "uid"), str(0x87, "cn")) }), true},
		// #13.2: control OIDs slapd would read as a C string or leniently.
		{"proxied authz OID with NUL", pdu(5, goodSearch(base), ctl(proxied+"\x00x", true, []byte("dn:"+alice))), true},
		{"proxied authz OID with space", pdu(5, goodSearch(base), ctl(proxied+" ", true, []byte("dn:"+alice))), true},
		{"proxied authz OID leading zero", pdu(5, goodSearch(base), ctl("2.16.840.1.113730.3.4.018", true, []byte("dn:"+alice))), true},
		{"root DSE with NUL-OID control", rootDSE(ctl(proxied+"\x00", true, []byte("dn:"+alice))), true},
		{"base [0] with NUL-OID control", pdu(5, searchOp(str(0x80, base), str(0x04, "\x02"), f.deref, f.size, f.time, f.types, f.filter, f.attrs),
			ctl(proxied+"\x00", true, []byte("dn:"+alice))), true},
		{"criticality INTEGER", pdu(5, goodSearch(base), tl(0x30, str(0x04, "1.2.840.113556.1.4.319"), num(0x02, 1), tl(0x04, paged))), true},
		{"controls SET", pdu(5, goodSearch(base), tl(0x31)), true},
		{"paged value not a SEQUENCE", pdu(5, goodSearch(base), ctl("1.2.840.113556.1.4.319", true, str(0x04, "x"))), true},
		// Other operations.
		{"bind name of 2 KiB", pdu(5, tl(0x60, num(0x02, 3), str(0x04, "uid="+strings.Repeat("a", 2048)), str(0x80, "x"))), true},
		{"bind version ENUMERATED", pdu(5, tl(0x60, num(0x0a, 3), str(0x04, ""), str(0x80, ""))), true},
		{"compare attribute [0]", pdu(5, tl(0x6e, str(0x04, alice), tl(0x30, str(0x80, "cn"), str(0x04, "alice")))), true},
		{"compare trailing bytes", pdu(5, tl(0x6e, str(0x04, alice), tl(0x30, str(0x04, "cn"), str(0x04, "alice"), str(0x04, "x")))), true},
		{"abandon constructed", pdu(5, tl(0x70, num(0x02, 1))), true},
		{"delete constructed", pdu(5, tl(0x6a, str(0x04, alice))), true},
		{"unbind with content", pdu(5, tl(0x42, []byte{0})), true},
		{"extended name OCTET STRING", pdu(5, tl(0x77, str(0x04, "1.3.6.1.4.1.4203.1.11.3"))), true},
		{"message ID 0", tl(0x30, num(0x02, 0), goodSearch(base)), true},
		// Well-formed edges: only the differential property applies.
		{"long-form length of base", search(func(g *fields) { g.base = append([]byte{0x04, 0x81, byte(len(base))}, base...) }), false},
		{"root DSE", rootDSE(), false},
		{"root DSE with critical ManageDsaIT", rootDSE(ctl("2.16.840.1.113730.3.4.2", true, nil)), false},
		{"root DSE with proxied authz", rootDSE(ctl(proxied, true, []byte("dn:"+alice))), false},
		{"subtree with proxied authz", pdu(5, goodSearch(base), ctl(proxied, true, []byte("dn:"+alice))), false},
		{"subtree with critical ManageDsaIT", pdu(5, goodSearch(base), ctl("2.16.840.1.113730.3.4.2", true, nil)), false},
		{"subtree with non-critical Relax", pdu(5, goodSearch(base), ctl("1.3.6.1.4.1.4203.666.5.12", false, nil)), false},
		{"paged subtree", pdu(5, goodSearch(base), ctl("1.2.840.113556.1.4.319", true, paged)), false},
		{"substrings", search(func(g *fields) {
			g.filter = tl(0xa4, str(0x04, "uid"), tl(0x30, str(0x80, "a"), str(0x81, "i"), str(0x82, "e")))
		}), false},
		{"extensible dnAttributes", search(func(g *fields) {
			g.filter = tl(0xa9, str(0x82, "ou"), str(0x83, "people"), []byte{0x84, 1, 0xff})
		}), false},
		{"empty and", search(func(g *fields) { g.filter = tl(0xa0) }), false},
		{"telephoneNumber", search(func(g *fields) { g.filter = str(0x87, "telephoneNumber"); g.attrs = tl(0x30, str(0x04, "*")) }), false},
		{"projects", pdu(5, goodSearch("ou=projects,"+base)), false},
		{"compare alice's project", pdu(5, tl(0x6e, str(0x04, "cn=apollo,ou=projects,"+base), tl(0x30, str(0x04, "cn"), str(0x04, "apollo")))), false},
	}
}

// TestDifferentialRawPDUs sends hand-built PDUs through Legate to a real
// slapd, unbound, bound as bob, and bound as bob in service mode: nothing
// may come back that the same client cannot read with a plain anonymous
// or self bind directly against slapd (#13.1, #13.2), and what the strict
// decoder refuses ends with protocolError.
func TestDifferentialRawPDUs(t *testing.T) {
	modes := []struct {
		name    string
		service bool
		bound   bool
	}{{"unbound", false, false}, {"bob", false, true}, {"service bob", true, true}}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, envOptions{mutate: func(o *ldapproxy.Options) {
				if mode.service {
					o.Authz = ldapproxy.AuthzService
					o.SearchBases = []string{"ou=people,dc=example,dc=com"}
					o.Attributes = []string{"uid", "cn", "mail", "objectClass"}
				}
			}})
			var seen map[string]bool
			var secret string
			if mode.bound {
				seen = baseline(t, e, e.slapd.UserDN("bob"), e.slapd.Users["bob"])
				_, s, err := e.store.Create(t.Context(), store.CreateRequest{User: "bob", Name: "raw"})
				if err != nil {
					t.Fatal(err)
				}
				secret = s
			} else {
				seen = baseline(t, e, "", "")
			}
			for _, tc := range rawCases(e.slapd.BaseDN) {
				t.Run(tc.name, func(t *testing.T) {
					var rc *rawConn
					if mode.bound {
						rc = dialPDU(t, e.addr, e.certs.ClientTLS.Clone())
						rc.bind("bob", secret)
					} else {
						rc = dialPDU(t, e.addr, nil)
					}
					got := rc.do(tc.pdu, 5)
					for _, line := range got.entries {
						if !seen[line] {
							t.Errorf("got %q, which bob/anonymous cannot read directly from slapd", strings.ReplaceAll(line, "\x00", " | "))
						}
					}
					if mode.service {
						checkConfined(t, got.entries)
					}
					if tc.proto && (got.notice != 2 || !got.closed) {
						t.Errorf("got %v, want a Notice of Disconnection with protocolError (2) and close", got)
					}
					if !tc.proto && got.notice >= 0 {
						t.Errorf("got %v, want an answer without disconnection", got)
					}
				})
			}
		})
	}
}

// checkConfined: in service mode only entries under ou=people (or the
// root DSE) with the configured attributes come back.
func checkConfined(t *testing.T, lines []string) {
	t.Helper()
	allowed := map[string]bool{"uid": true, "cn": true, "mail": true, "objectclass": true}
	for _, line := range lines {
		parts := strings.Split(line, "\x00")
		if parts[0] != "" && !strings.HasSuffix(parts[0], "ou=people,dc=example,dc=com") {
			t.Errorf("service mode: got entry %q outside the search bases", parts[0])
		}
		if parts[0] != "" && len(parts) > 1 && !allowed[parts[1]] {
			t.Errorf("service mode: got attribute %q outside attributes", parts[1])
		}
	}
}

// TestMessageIDReuse (#13.3): a message ID reused while its request is
// outstanding ends the connection with protocolError (it used to replace
// the first request's bookkeeping and get around MaxOutstanding).
func TestMessageIDReuse(t *testing.T) {
	e := newEnv(t, envOptions{extraEntries: 2000})
	_, secret, err := e.store.Create(t.Context(), store.CreateRequest{User: "bob", Name: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	rc := dialPDU(t, e.addr, e.certs.ClientTLS.Clone())
	rc.bind("bob", secret)
	paged := ctl("1.2.840.113556.1.4.319", false, tl(0x30, []byte{0x02, 2, 0x0f, 0xa0}, str(0x04, "")))
	first := pdu(7, goodSearch(e.slapd.BaseDN), paged)
	got := rc.do(append(first, pdu(7, goodSearch(e.slapd.BaseDN))...), 7)
	for got.code >= 0 && got.notice < 0 && !got.closed { // the first search's answer; read on
		got = rc.do(nil, 7)
	}
	if got.notice != 2 || !got.closed {
		t.Errorf("got %v, want a Notice of Disconnection with protocolError (2) and close", got)
	}
}
