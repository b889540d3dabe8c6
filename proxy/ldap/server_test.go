package ldap_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"go.uber.org/goleak"

	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	ldapproxy "github.com/legate-proxy/legate/proxy/ldap"
)

func startFake(t *testing.T, o ldapproxy.Options) (*ldapproxy.Server, string) {
	t.Helper()
	srv := ldapproxy.NewServer(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-errc; !errors.Is(err, ldapproxy.ErrServerClosed) {
			t.Errorf("Serve: got %v, want ErrServerClosed", err)
		}
	})
	return srv, ln.Addr().String()
}

func dialGoLDAP(t *testing.T, addr string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldap://"+addr, ldap.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(5 * time.Second)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBindOutcomes(t *testing.T) {
	checkLeaks(t)
	fa := &logintest.Auth{PlainOK: true}
	_, addr := startFake(t, ldapproxy.Options{Auth: fa, Logger: testLogger(t),
		Upstream: &upstream.Config{Address: "127.0.0.1:1", DialTimeout: time.Second}})
	tests := []struct {
		name, user, pw string
		code           uint16
		diag           string
	}{
		{"allow", "uid=alice,ou=people,dc=example,dc=com", "allow", 0, ""},
		{"bad", "alice", "bad", 49, "invalid credentials"},
		{"refused", "alice", "refused", 49, "because refused"},
		{"expired", "alice", "expired", 49, "expired"},
		{"throttled", "alice", "throttled", 51, ""},
		{"down", "alice", "down", 52, ""},
		{"tls", "alice", "tls", 13, ""},
		{"no name", "", "secret", 49, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialGoLDAP(t, addr)
			err := c.Bind(tc.user, tc.pw)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("Bind: got %v, want success", err)
				}
				res, err := c.WhoAmI(nil)
				if err != nil || res.AuthzID != "dn:uid=alice,ou=people,dc=example,dc=com" {
					t.Errorf("WhoAmI: got %+v %v, want dn:uid=alice,...", res, err)
				}
				// The upstream is down: forwarded requests answer unavailable.
				_, err = c.Search(ldap.NewSearchRequest("dc=example,dc=com", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=*)", nil, nil))
				if !ldap.IsErrorWithCode(err, 52) {
					t.Errorf("Search with upstream down: got %v, want 52", err)
				}
				return
			}
			if !ldap.IsErrorWithCode(err, tc.code) || !strings.Contains(err.Error(), tc.diag) {
				t.Errorf("Bind: got %v, want code %d with %q", err, tc.code, tc.diag)
			}
		})
	}
	reqs := fa.Requests()
	if len(reqs) == 0 || reqs[0].User != "uid=alice,ou=people,dc=example,dc=com" || reqs[0].Protocol != policy.LDAP {
		t.Errorf("first auth request: got %+v, want the bind DN as user and protocol ldap", reqs)
	}
}

func TestPlaintextRefusedAndPreBind(t *testing.T) {
	fa := &logintest.Auth{}
	_, addr := startFake(t, ldapproxy.Options{Auth: fa, Logger: testLogger(t)})
	c := dialGoLDAP(t, addr)
	if err := c.Bind("alice", "allow"); !ldap.IsErrorWithCode(err, 13) {
		t.Errorf("plaintext Bind: got %v, want 13", err)
	}
	if err := c.Bind("alice", ""); err == nil {
		t.Errorf("empty password Bind: got success, want refusal")
	}
	if err := c.UnauthenticatedBind("alice"); !ldap.IsErrorWithCode(err, 53) {
		t.Errorf("unauthenticated Bind: got %v, want 53", err)
	}
	if err := c.UnauthenticatedBind(""); err != nil {
		t.Errorf("anonymous Bind: got %v, want success", err)
	}
	res, err := c.WhoAmI(nil)
	if err != nil || res.AuthzID != "" {
		t.Errorf("anonymous WhoAmI: got %+v %v, want empty authzId", res, err)
	}
	_, err = c.Search(ldap.NewSearchRequest("dc=example,dc=com", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=*)", nil, nil))
	if !ldap.IsErrorWithCode(err, 50) {
		t.Errorf("anonymous Search: got %v, want 50", err)
	}
	if _, err := c.Compare("uid=alice,dc=example,dc=com", "uid", "alice"); !ldap.IsErrorWithCode(err, 50) {
		t.Errorf("anonymous Compare: got %v, want 50", err)
	}
	if err := c.ExternalBind(); !ldap.IsErrorWithCode(err, 7) {
		t.Errorf("SASL EXTERNAL Bind: got %v, want 7", err)
	}
	if len(fa.Requests()) != 0 {
		t.Errorf("login service asked %d times, want 0 (nothing reached it)", len(fa.Requests()))
	}
}

// readNotice reads until EOF and returns the result code of the Notice
// of Disconnection, if one came.
func readNotice(t *testing.T, c net.Conn) (code int64, ok bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for {
		p, err := ber.ReadPacket(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
				t.Errorf("reading until close: %v", err)
			}
			return code, ok
		}
		if len(p.Children) >= 2 && p.Children[0].Value == int64(0) && p.Children[1].Tag == 24 {
			op := p.Children[1]
			var name string
			for _, ch := range op.Children {
				if ch.ClassType == ber.ClassContext && ch.Tag == 10 {
					name = ch.Data.String()
				}
			}
			if name == "1.3.6.1.4.1.1466.20036" {
				code, ok = op.Children[0].Value.(int64), true
			}
		}
	}
}

func TestMalformedInput(t *testing.T) {
	checkLeaks(t)
	_, addr := startFake(t, ldapproxy.Options{Auth: &logintest.Auth{}, Logger: testLogger(t), MaxPDUSize: 64 << 10})
	deep := []byte{0x04, 0x00}
	for range 60 {
		deep = append([]byte{0x30, byte(len(deep))}, deep...)
		if len(deep) > 120 {
			deep = append([]byte{0x30, 0x81, byte(len(deep) - 2)}, deep[2:]...)
		}
	}
	nest := func(n int) []byte {
		b := []byte{0x04, 0x00}
		for range n {
			b = append(berLen(0x30, len(b)), b...)
		}
		op := append(berLen(0x63, len(b)), b...)
		body := append([]byte{0x02, 0x01, 0x01}, op...)
		return append(berLen(0x30, len(body)), body...)
	}
	tests := []struct {
		name string
		in   []byte
		half bool // close our write side after sending
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		// A forged PROXY header from a peer not in listen.proxy_protocol.trusted.
		{"PROXY v1 header", []byte("PROXY TCP4 192.0.2.66 10.0.0.1 4444 389\r\n"), false},
		{"PROXY v2 header", []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x42\x0a\x00\x00\x01\x11\x5c\x01\x85"), false},
		{"truncated", []byte{0x30, 0x20, 0x02, 0x01, 0x01, 0x60, 0x1b, 0x02}, true},
		{"huge length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01}, false},
		{"over MaxPDUSize", []byte{0x30, 0x83, 0x01, 0x00, 0x01, 0x02}, false},
		{"indefinite", []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x42, 0x00, 0x00, 0x00}, false},
		{"deep nesting", nest(100), false},
		{"response from client", []byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			if tc.half {
				c.(*net.TCPConn).CloseWrite()
			}
			code, ok := readNotice(t, c)
			if !ok || code != 2 {
				t.Errorf("got notice %v code %d, want a Notice of Disconnection with protocolError (2) then close", ok, code)
			}
		})
	}
}

func berLen(tag byte, n int) []byte {
	if n < 0x80 {
		return []byte{tag, byte(n)}
	}
	return []byte{tag, 0x82, byte(n >> 8), byte(n)}
}

func TestKillSendsNotice(t *testing.T) {
	checkLeaks(t)
	reg := session.New()
	_, addr := startFake(t, ldapproxy.Options{Auth: &logintest.Auth{PlainOK: true}, Sessions: reg, Logger: testLogger(t)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bind := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	bind.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(1), ""))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "")
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(3), ""))
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "alice", ""))
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "allow", ""))
	bind.AppendChild(req)
	c.Write(bind.Bytes())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, err := ber.ReadPacket(c); err != nil || p.Children[1].Children[0].Value != int64(0) {
		t.Fatalf("bind response: %v", err)
	}
	if got := reg.List("alice"); len(got) != 1 || got[0].AppPasswordID != "ap1" || got[0].Protocol != "ldap" {
		t.Fatalf("registry: got %+v, want one ldap session of alice with ap1", got)
	}
	start := time.Now()
	if n := reg.KillAppPasswords("ap1"); n != 1 {
		t.Fatalf("killed %d sessions, want 1", n)
	}
	code, ok := readNotice(t, c)
	if took := time.Since(start); !ok || code != 52 || took > time.Second {
		t.Errorf("after kill: notice %v code %d after %v, want code 52 within 1s", ok, code, took)
	}
	deadline := time.Now().Add(time.Second)
	for len(reg.List("")) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(reg.List("")); n != 0 {
		t.Errorf("registry still holds %d sessions after the kill", n)
	}
}

func TestServeTLSNeedsConfig(t *testing.T) {
	srv := ldapproxy.NewServer(ldapproxy.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := srv.ServeTLS(ln); err == nil {
		t.Errorf("ServeTLS without TLS: got nil error, want one")
	}
	_ = tls.VersionTLS13
}

// checkLeaks verifies, after the test's other cleanups (server Close), that
// no goroutine started during the test is left.
func checkLeaks(t *testing.T) {
	ign := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ign) })
}

// TestLongBindDNIsProtocolError (#18.1): a bind name over 1 KiB ends the
// connection with protocolError before the login service (lookup, audit)
// sees it; 1 KiB exactly is still a bind.
func TestLongBindDNIsProtocolError(t *testing.T) {
	fa := &logintest.Auth{PlainOK: true}
	_, addr := startFake(t, ldapproxy.Options{Auth: fa, Logger: testLogger(t)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	long := pdu(1, tl(0x60, num(0x02, 3), str(0x04, "uid="+strings.Repeat("a", 1021)), str(0x80, "allow")))
	if _, err := c.Write(long); err != nil {
		t.Fatal(err)
	}
	if code, ok := readNotice(t, c); !ok || code != 2 {
		t.Errorf("got notice %v code %d, want protocolError (2)", ok, code)
	}
	n := len(fa.Requests())
	if n != 0 {
		t.Errorf("login service asked %d times, want 0", n)
	}
	rc := dialPDU(t, addr, nil)
	res := rc.do(pdu(1, tl(0x60, num(0x02, 3), str(0x04, "uid="+strings.Repeat("a", 1020)), str(0x80, "allow"))), 1)
	if res.code != 0 {
		t.Errorf("bind with a 1024-byte name: got %v, want success", res)
	}
}
