package systemtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/portal/demoidp"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/testenv"
)

// Loopback addresses of the PROXY protocol test: HAProxy connects to
// Legate from balancerIP; clients connect to HAProxy from clientIP (in
// policy.trusted_networks) or otherIP (outside it).
const (
	balancerIP = "127.0.0.1"
	clientIP   = "127.0.0.2"
	otherIP    = "127.0.0.3"
)

// TestPROXYProtocolThroughHAProxy (#16.1): the whole daemon with
// listen.proxy_protocol.trusted [127.0.0.1/32] behind HAProxy
// (send-proxy-v2 and send-proxy, implicit TLS after the header), in front
// of real Dovecot and slapd:
//   - SMTP submission logins (implicit TLS and STARTTLS after the header)
//     and LDAP binds from 127.0.0.2 are audited,
//     registered (`legate sessions`) and throttled under 127.0.0.2;
//   - the trusted-network primary password (policy.trusted_networks
//     [127.0.0.2/32]) works through HAProxy for 127.0.0.2 only, not for
//     127.0.0.3, and the balancer's own address does not count; metrics
//     count it under its rule;
//   - a forged header sent straight from an untrusted address is refused
//     on IMAP, SMTP (plain and implicit TLS) and LDAP.
func TestPROXYProtocolThroughHAProxy(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Admin: true, Mutate: func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.Listen.ProxyProtocol = config.ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix(balancerIP + "/32")},
			Timeout: config.Duration(3 * time.Second)}
		c.Policy.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix(clientIP + "/32")}
		c.Throttle.MaxFailuresPerIP = 3
		c.Throttle.MaxFailuresPerUser = 100
	}})
	pw := lg.CreateAppPassword(t, "alice", "Laptop")
	primary := ups.Slapd.Users["alice"]
	subs, ldaps, sub := lg.AddrOf(t, "submissions"), lg.AddrOf(t, "ldaps"), lg.AddrOf(t, "submission")
	hp := testenv.StartHAProxy(t,
		testenv.HAProxyRoute{Server: subs + " send-proxy-v2"},
		testenv.HAProxyRoute{Server: subs + " send-proxy"},
		testenv.HAProxyRoute{Server: ldaps + " send-proxy-v2"},
		testenv.HAProxyRoute{Server: ldaps + " send-proxy"},
		testenv.HAProxyRoute{Server: sub + " send-proxy-v2"},
	)
	smtpV2, smtpV1, ldapV2, ldapV1, startTLS := hp.Addrs[0], hp.Addrs[1], hp.Addrs[2], hp.Addrs[3], hp.Addrs[4]
	tc := lg.ClientTLS()
	ctx := context.Background()

	// App-password logins through HAProxy, held open for `legate sessions`.
	for _, front := range []string{smtpV2, smtpV1} {
		smtpFrom(t, clientIP, front, tc).Login(t, "alice", pw)
	}
	for _, front := range []string{ldapV2, ldapV1} {
		if code, err := ldapFrom(t, clientIP, front, tc).Bind("alice", pw, 10*time.Second); err != nil || code != 0 {
			t.Fatalf("LDAP bind through %s: got %d (%v), want 0", front, code, err)
		}
	}
	// STARTTLS after the header (plain submission port).
	raw := rawFrom(t, clientIP, startTLS)
	plain := &RawSMTP{Conn: raw, r: textproto.NewReader(bufio.NewReader(raw))}
	if code, msg, err := plain.Reply(10 * time.Second); err != nil || code != 220 {
		t.Fatalf("greeting through haproxy: %d %s (%v)", code, msg, err)
	}
	if code, msg, err := plain.Cmd("EHLO client.example", 10*time.Second); err != nil || code != 250 {
		t.Fatalf("EHLO: %d %s (%v)", code, msg, err)
	}
	if code, msg, err := plain.Cmd("STARTTLS", 10*time.Second); err != nil || code != 220 {
		t.Fatalf("STARTTLS: %d %s (%v)", code, msg, err)
	}
	secured := tls.Client(raw, tc)
	(&RawSMTP{Conn: secured, r: textproto.NewReader(bufio.NewReader(secured))}).Login(t, "alice", pw)
	waitSessions(t, lg.Control(), "alice", 5)
	var listed []session.Info
	if err := json.Unmarshal([]byte(runCLI(t, lg, "sessions", "--user", "alice", "--json")), &listed); err != nil {
		t.Fatalf("legate sessions --json: %v", err)
	}
	if len(listed) != 5 {
		t.Errorf("legate sessions: got %d sessions, want 5", len(listed))
	}
	for _, s := range listed {
		if s.IP.String() != clientIP {
			t.Errorf("legate sessions: %s session from %s, want %s", s.Protocol, s.IP, clientIP)
		}
	}
	recs, err := lg.Control().Audit(ctx, control.AuditArgs{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	logins := 0
	for _, r := range recs {
		if r.Action != "login" {
			continue
		}
		logins++
		if r.IP != clientIP {
			t.Errorf("audit: %s login from %q, want %s", r.Protocol, r.IP, clientIP)
		}
	}
	if logins != 5 {
		t.Errorf("audit: %d logins of alice, want 5", logins)
	}

	// The trusted-network primary password: 127.0.0.2 is in
	// trusted_networks, 127.0.0.3 is not, HAProxy's 127.0.0.1 is not.
	c := smtpFrom(t, clientIP, smtpV2, tc)
	c.Login(t, "alice", primary)
	if code, msg, err := authPlain(smtpFrom(t, otherIP, smtpV2, tc), "alice", primary); err != nil || code != 535 {
		t.Errorf("primary password from %s through HAProxy: got %d %s (%v), want 535", otherIP, code, msg, err)
	}
	if code, err := ldapFrom(t, clientIP, ldapV1, tc).Bind("alice", primary, 10*time.Second); err != nil || code != 0 {
		t.Errorf("LDAP bind with the primary password from %s: got %d (%v), want 0", clientIP, code, err)
	}
	if code, err := ldapFrom(t, otherIP, ldapV2, tc).Bind("alice", primary, 10*time.Second); err != nil || code != 49 {
		t.Errorf("LDAP bind with the primary password from %s: got %d (%v), want 49", otherIP, code, err)
	}
	metrics := scrape(t, lg)
	for _, want := range []string{
		`legate_logins_total{outcome="allow",protocol="smtp",rule="trusted_network_primary"} 1`,
		`legate_logins_total{outcome="allow",protocol="ldap",rule="trusted_network_primary"} 1`,
		`legate_sessions{protocol="smtp"} 4`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics: no line %q", want)
		}
	}

	// Forged headers sent straight to Legate from an address that is not
	// a trusted balancer.
	const forged = "PROXY TCP4 192.0.2.66 10.0.0.1 4444 25\r\n"
	t.Run("forged header, SMTP", func(t *testing.T) {
		raw := rawFrom(t, clientIP, lg.AddrOf(t, "submission"))
		r := textproto.NewReader(bufio.NewReader(raw))
		if code, _, err := r.ReadResponse(220); err != nil {
			t.Fatalf("greeting: %d (%v)", code, err)
		}
		fmt.Fprint(raw, forged+"EHLO client.example\r\n")
		if code, msg, err := r.ReadResponse(0); err != nil || code != 421 {
			t.Errorf("forged header: got %d %s (%v), want 421", code, msg, err)
		}
		expectEOF(t, raw)
		tlsAfterForged(t, lg.AddrOf(t, "submissions"), tc)
	})
	t.Run("forged header, LDAP", func(t *testing.T) {
		for _, hdr := range []string{forged, "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x42\x0a\x00\x00\x01\x11\x5c\x01\x85"} {
			raw := rawFrom(t, clientIP, lg.AddrOf(t, "ldap"))
			io.WriteString(raw, hdr)
			_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			p, err := ber.ReadPacket(raw)
			if err != nil || !NoticeOfDisconnection(p) || p.Children[1].Children[0].Value != int64(2) {
				t.Errorf("forged header %q: got %v (%v), want a Notice of Disconnection with protocolError (2)", hdr[:8], p, err)
			}
			expectEOF(t, raw)
		}
		tlsAfterForged(t, lg.AddrOf(t, "ldaps"), tc)
	})
	t.Run("forged header, IMAP", func(t *testing.T) {
		raw := rawFrom(t, clientIP, lg.AddrOf(t, "imap"))
		br := bufio.NewReader(raw)
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting: %q (%v)", l, err)
		}
		fmt.Fprint(raw, forged)
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* BYE") {
			t.Errorf("forged header: got %q (%v), want * BYE", l, err)
		}
		expectEOF(t, raw)
	})
	recs, _ = lg.Control().Audit(ctx, control.AuditArgs{})
	for _, r := range recs {
		if r.IP == "192.0.2.66" || r.IP == balancerIP {
			t.Errorf("audit record %d from %s: a forged or balancer address", r.Seq, r.IP)
		}
	}

	// Throttling: failures through HAProxy count against 127.0.0.2, not
	// against the balancer, so 127.0.0.3 behind the same balancer is not
	// blocked when 127.0.0.2 is.
	for i := range 3 {
		if code, msg, err := authPlain(smtpFrom(t, clientIP, smtpV2, tc), "bob", "WRNG-WRNG-WRNG-WRNG"); err != nil || code != 535 {
			t.Fatalf("wrong password %d: got %d %s (%v), want 535", i, code, msg, err)
		}
	}
	if code, msg, err := authPlain(smtpFrom(t, clientIP, smtpV1, tc), "alice", pw); err != nil || code != 454 {
		t.Errorf("alice from the throttled %s: got %d %s (%v), want 454", clientIP, code, msg, err)
	}
	if code, err := ldapFrom(t, clientIP, ldapV2, tc).Bind("alice", pw, 10*time.Second); err != nil || code != 51 {
		t.Errorf("LDAP bind from the throttled %s: got %d (%v), want busy (51)", clientIP, code, err)
	}
	smtpFrom(t, otherIP, smtpV2, tc).Login(t, "alice", pw)
	recs, _ = lg.Control().Audit(ctx, control.AuditArgs{User: "bob"})
	if len(recs) == 0 {
		t.Error("audit: no record of bob's failures")
	}
	for _, r := range recs {
		if r.IP != clientIP {
			t.Errorf("audit: bob's %s %s from %q, want %s", r.Action, r.Outcome, r.IP, clientIP)
		}
	}
}

// rawFrom connects from a loopback address.
func rawFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// smtpFrom connects over implicit TLS from a loopback address and reads
// the greeting.
func smtpFrom(t *testing.T, from, addr string, tc *tls.Config) *RawSMTP {
	t.Helper()
	c := tls.Client(rawFrom(t, from, addr), tc)
	sc := &RawSMTP{Conn: c, r: textproto.NewReader(bufio.NewReader(c))}
	if code, msg, err := sc.Reply(10 * time.Second); err != nil || code != 220 {
		t.Fatalf("greeting from %s: %d %s (%v), want 220", addr, code, msg, err)
	}
	return sc
}

// ldapFrom connects over implicit TLS from a loopback address.
func ldapFrom(t *testing.T, from, addr string, tc *tls.Config) *RawLDAP {
	t.Helper()
	return &RawLDAP{Conn: tls.Client(rawFrom(t, from, addr), tc)}
}

// authPlain sends EHLO and AUTH PLAIN and returns the AUTH reply.
func authPlain(c *RawSMTP, user, pass string) (int, string, error) {
	if code, msg, err := c.Cmd("EHLO client.example", 10*time.Second); err != nil || code != 250 {
		return code, msg, fmt.Errorf("EHLO: %v", err)
	}
	return c.Cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)), 20*time.Second)
}

// expectEOF fails unless Legate closes c within 5 s.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("connection not closed: %v", err)
	}
}

// tlsAfterForged sends a forged header to an implicit-TLS listener from an
// untrusted address: the TLS handshake that follows must fail.
func tlsAfterForged(t *testing.T, addr string, tc *tls.Config) {
	t.Helper()
	raw := rawFrom(t, clientIP, addr)
	io.WriteString(raw, "PROXY TCP4 192.0.2.66 10.0.0.1 4444 465\r\n")
	c := tls.Client(raw, tc)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err == nil {
		t.Errorf("%s: TLS handshake after a forged header succeeded, want failure", addr)
	}
}

// scrape returns the /metrics text.
func scrape(t *testing.T, lg *Legate) string {
	t.Helper()
	resp, err := http.Get("http://" + lg.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPROXYProtocolPortal (#16.1): listen.portal takes PROXY headers too:
// a sign-in through HAProxy (send-proxy-v2, TLS passed through to the
// portal) from 127.0.0.2 is logged under 127.0.0.2, not the balancer's
// 127.0.0.1; an X-Forwarded-For the client sends is ignored because
// 127.0.0.2 is not in portal.trusted_proxies.
func TestPROXYProtocolPortal(t *testing.T) {
	idpSrv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(idpSrv.Close)
	front := testenv.FreeAddr(t)
	external := "https://" + front
	idp, err := demoidp.New(demoidp.Options{Issuer: idpSrv.URL, ClientID: "legate-portal", ClientSecret: "portal-secret",
		RedirectURIs: []string{external + "/callback"}, Users: []demoidp.User{{Username: "alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	idpSrv.Config.Handler = idp
	lg := StartLegate(t, LegateOptions{Mutate: func(c *config.Config) {
		c.Listen.Portal = "127.0.0.1:0"
		c.Listen.ProxyProtocol = config.ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix(balancerIP + "/32")}}
		c.Portal.ExternalURL = external
		c.Portal.SessionKeyFile = filepath.Join(t.TempDir(), "portal.key") // the default is relative to the working directory
		c.Portal.OIDC.Issuer, c.Portal.OIDC.ClientID = idpSrv.URL, "legate-portal"
		c.Portal.OIDC.ClientSecretFile = writeSecret(t, t.TempDir(), "oidc.secret", "portal-secret")
	}})
	testenv.StartHAProxy(t, testenv.HAProxyRoute{Bind: front, Server: lg.AddrOf(t, "portal") + " send-proxy-v2"})

	jar, _ := cookiejar.New(nil)
	dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}}
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second, Transport: forwardedFor{&http.Transport{
		DialContext: dialer.DialContext, TLSClientConfig: lg.ClientTLS()}}}
	resp, err := client.Get(external + "/login")
	if err != nil {
		t.Fatalf("GET /login through haproxy: %v", err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Request.URL.String(), idpSrv.URL+"/signin") {
		t.Fatalf("GET /login through haproxy: landed on %s (%d), want the provider's sign-in page", resp.Request.URL, resp.StatusCode)
	}
	resp, err = client.PostForm(idpSrv.URL+"/signin", url.Values{"id": {resp.Request.URL.Query().Get("id")},
		"username": {"alice"}, "code": {idp.Code("alice")}})
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), external) {
		t.Fatalf("sign-in: landed on %s (%d), want the portal's page", resp.Request.URL, resp.StatusCode)
	}
	re := regexp.MustCompile(`msg="portal: signed in".* ip=(\S+)`)
	var ips []string
	for _, line := range strings.Split(lg.Logs.String(), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			ips = append(ips, m[1])
		}
	}
	if len(ips) != 1 || ips[0] != clientIP {
		t.Errorf("portal sign-in logged from %v, want [%s]", ips, clientIP)
	}
}

// forwardedFor adds a forged X-Forwarded-For to every request.
type forwardedFor struct{ rt http.RoundTripper }

func (f forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	return f.rt.RoundTrip(r)
}
