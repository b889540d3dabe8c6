package portal_test

import (
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/portal/portaltest"
	"github.com/legate-proxy/legate/internal/testenv"
)

var setupLinkRE = regexp.MustCompile(`href="([^"]*/setup/[^"]+)" id="setup-link"`)

// fetch GETs a URL with no cookies (a phone that scanned the QR code).
func fetch(t *testing.T, e *testEnv, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := e.Client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// plistMail parses a profile with python3's plistlib and returns its mail
// payload.
func plistMail(t *testing.T, path string) map[string]any {
	t.Helper()
	out, err := exec.Command("python3", "-c", `import json, plistlib, sys
d = plistlib.load(open(sys.argv[1], "rb"))
assert d["PayloadType"] == "Configuration", d["PayloadType"]
print(json.dumps(d["PayloadContent"][0]))`, path).CombinedOutput()
	if err != nil {
		t.Fatalf("plistlib: %v: %s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("plistlib output %s: %v", out, err)
	}
	return m
}

func checkMailPayload(t *testing.T, m map[string]any, secret string) {
	t.Helper()
	for k, want := range map[string]any{
		"PayloadType":                      "com.apple.mail.managed",
		"EmailAccountType":                 "EmailTypeIMAP",
		"EmailAddress":                     "alice@example.com",
		"IncomingMailServerHostName":       "mail.example.com",
		"IncomingMailServerPortNumber":     float64(993),
		"IncomingMailServerUseSSL":         true,
		"IncomingMailServerUsername":       "alice",
		"IncomingPassword":                 secret,
		"OutgoingMailServerHostName":       "mail.example.com",
		"OutgoingMailServerPortNumber":     float64(587),
		"OutgoingMailServerUseSSL":         true,
		"OutgoingMailServerUsername":       "alice",
		"OutgoingPassword":                 secret,
		"IncomingMailServerAuthentication": "EmailAuthPassword",
	} {
		if m[k] != want {
			t.Errorf("profile %s: got %v, want %v", k, m[k], want)
		}
	}
}

// TestDeviceSetupProfile (#16.5): the page right after a create links a
// one-time signed .mobileconfig (and shows its QR code); the profile
// verifies with openssl cms against the CA and parses with plistlib with
// the right hosts, ports, SSL flags, user and password; the link works
// once (then 410), an unknown one is 404, one older than its TTL or from
// a signed-out session no longer works.
func TestDeviceSetupProfile(t *testing.T) {
	testenv.Require(t, "python3", "openssl")
	certs := testenv.NewCerts(t)
	cert := certs.ServerTLS.Certificates[0]
	e := start(t, portaltest.Options{Certificate: func() *tls.Certificate { return &cert }})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	p, secret := create(t, alice, "iPhone", nil)
	m := setupLinkRE.FindStringSubmatch(p.Body)
	if m == nil || secret == "" {
		t.Fatalf("created page: no set-up link or secret; body %.500s", p.Body)
	}
	link := m[1]
	if !strings.HasPrefix(link, e.URL+"/setup/") || strings.Contains(link, secret) {
		t.Fatalf("set-up link %q: want %s/setup/TOKEN without the secret", link, e.URL)
	}
	if !strings.Contains(p.Body, `<svg`) || !strings.Contains(p.Body, `id="setup-qr"`) {
		t.Error("created page: no QR code")
	}

	if resp, err := e.Client.Head(link); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HEAD of the link: got %v %v, want 405 (and the link not used up)", resp, err)
	}
	status, h, body := fetch(t, e, link)
	if status != http.StatusOK || h.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("profile: got %d %q, want 200 application/x-apple-aspen-config", status, h.Get("Content-Type"))
	}
	dir := t.TempDir()
	signed, plain := filepath.Join(dir, "signed.mobileconfig"), filepath.Join(dir, "plain.plist")
	os.WriteFile(signed, body, 0o600)
	if out, err := exec.Command("openssl", "cms", "-verify", "-inform", "DER", "-in", signed, "-CAfile", certs.CAFile,
		"-purpose", "any", "-out", plain).CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -verify: %v: %s", err, out)
	}
	checkMailPayload(t, plistMail(t, plain), secret)
	// Tampered: the signature no longer verifies.
	bad := append([]byte(nil), body...)
	if i := strings.Index(string(bad), "mail.example.com"); i > 0 {
		bad[i] = 'M'
	}
	os.WriteFile(signed, bad, 0o600)
	if err := exec.Command("openssl", "cms", "-verify", "-inform", "DER", "-in", signed, "-CAfile", certs.CAFile,
		"-purpose", "any", "-out", plain).Run(); err == nil {
		t.Error("openssl cms -verify of a tampered profile: got success")
	}

	if status, _, _ := fetch(t, e, link); status != http.StatusGone {
		t.Errorf("second download: got %d, want 410", status)
	}
	if status, _, _ := fetch(t, e, e.URL+"/setup/NOSUCHTOKEN"); status != http.StatusNotFound {
		t.Errorf("unknown token: got %d, want 404", status)
	}

	// Expiry: a link not used within its minutes is gone.
	p, _ = create(t, alice, "iPad", nil)
	link2 := setupLinkRE.FindStringSubmatch(p.Body)[1]
	e.Clock.Advance(6 * time.Minute)
	if status, _, _ := fetch(t, e, link2); status != http.StatusNotFound && status != http.StatusGone {
		t.Errorf("expired link: got %d, want 404 or 410", status)
	}

	// Bound to the session: sign-out ends its links.
	second := e.NewUser(t, "alice")
	second.SignIn(t)
	p, _ = create(t, second, "Mac", nil)
	link3 := setupLinkRE.FindStringSubmatch(p.Body)[1]
	second.Post(t, "/logout", map[string][]string{"csrf": {second.CSRF}})
	if status, _, _ := fetch(t, e, link3); status != http.StatusGone {
		t.Errorf("link of a signed-out session: got %d, want 410", status)
	}

	// Never again: the list page has no link.
	if l := second.Get(t, "/"); setupLinkRE.MatchString(l.Body) {
		t.Error("list page: has a set-up link")
	}
	// A password limited to SMTP gets no profile (it could not read mail).
	dave := e.NewUser(t, "dave")
	dave.SignIn(t)
	if p, s := create(t, dave, "Printer", map[string][]string{"scope": {"smtp"}}); s == "" || setupLinkRE.MatchString(p.Body) {
		t.Errorf("SMTP-only password: secret %q, set-up link shown %v; want a secret and no link", s, setupLinkRE.MatchString(p.Body))
	}
}

// TestDeviceSetupUnsigned: without a certificate the profile is a plain
// plist.
func TestDeviceSetupUnsigned(t *testing.T) {
	testenv.Require(t, "python3")
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	p, secret := create(t, alice, "iPhone", nil)
	m := setupLinkRE.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatal("no set-up link")
	}
	status, _, body := fetch(t, e, m[1])
	if status != http.StatusOK || !strings.HasPrefix(string(body), "<?xml") {
		t.Fatalf("profile: got %d %.40q, want 200 and an XML plist", status, body)
	}
	path := filepath.Join(t.TempDir(), "p.mobileconfig")
	os.WriteFile(path, body, 0o600)
	checkMailPayload(t, plistMail(t, path), secret)
}

// TestAutoconfig (#16.5): Thunderbird autoconfig at both paths and Outlook
// POX Autodiscover answer from portal.client_settings, without a session
// and without any secret.
func TestAutoconfig(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	_, secret := create(t, alice, "Thunderbird", nil)
	for _, path := range []string{"/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"} {
		status, h, body := fetch(t, e, e.URL+path+"?emailaddress=alice%40example.com")
		if status != http.StatusOK || !strings.Contains(h.Get("Content-Type"), "xml") {
			t.Fatalf("%s: got %d %q", path, status, h.Get("Content-Type"))
		}
		var c struct {
			Provider struct {
				ID     string `xml:"id,attr"`
				Domain string `xml:"domain"`
				In     []struct {
					Type     string `xml:"type,attr"`
					Host     string `xml:"hostname"`
					Port     int    `xml:"port"`
					Socket   string `xml:"socketType"`
					Auth     string `xml:"authentication"`
					Username string `xml:"username"`
				} `xml:"incomingServer"`
				Out []struct {
					Type   string `xml:"type,attr"`
					Host   string `xml:"hostname"`
					Port   int    `xml:"port"`
					Socket string `xml:"socketType"`
				} `xml:"outgoingServer"`
			} `xml:"emailProvider"`
		}
		if err := xml.Unmarshal(body, &c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		pr := c.Provider
		if pr.Domain != "example.com" || len(pr.In) != 1 || len(pr.Out) != 1 {
			t.Fatalf("%s: got %+v", path, pr)
		}
		if in := pr.In[0]; in.Type != "imap" || in.Host != "mail.example.com" || in.Port != 993 || in.Socket != "SSL" ||
			in.Auth != "password-cleartext" || in.Username != "%EMAILADDRESS%" {
			t.Errorf("%s: incoming %+v, want imap mail.example.com:993 SSL", path, in)
		}
		if out := pr.Out[0]; out.Type != "smtp" || out.Host != "mail.example.com" || out.Port != 587 || out.Socket != "STARTTLS" {
			t.Errorf("%s: outgoing %+v, want smtp mail.example.com:587 STARTTLS", path, out)
		}
		if strings.Contains(string(body), secret) {
			t.Errorf("%s: the answer holds the secret", path)
		}
	}

	req := `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>alice@example.com</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>
</Autodiscover>`
	resp, err := e.Client.Post(e.URL+"/autodiscover/autodiscover.xml", "text/xml", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("autodiscover: got %d: %s", resp.StatusCode, body)
	}
	var ad struct {
		XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
		Response struct {
			XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
			Account struct {
				Type     string `xml:"AccountType"`
				Action   string `xml:"Action"`
				Protocol []struct {
					Type, Server, LoginName, SSL, Encryption string
					Port                                     int
				}
			}
		}
	}
	if err := xml.Unmarshal(body, &ad); err != nil {
		t.Fatalf("autodiscover answer: %v: %s", err, body)
	}
	a := ad.Response.Account
	if a.Type != "email" || a.Action != "settings" || len(a.Protocol) != 2 {
		t.Fatalf("autodiscover: got %+v", a)
	}
	for i, want := range []struct {
		typ  string
		port int
		enc  string
	}{{"IMAP", 993, "SSL"}, {"SMTP", 587, "TLS"}} {
		p := a.Protocol[i]
		if p.Type != want.typ || p.Server != "mail.example.com" || p.Port != want.port || p.Encryption != want.enc || p.LoginName != "alice@example.com" {
			t.Errorf("autodiscover protocol %d: got %+v, want %s mail.example.com:%d %s", i, p, want.typ, want.port, want.enc)
		}
	}
	if strings.Contains(string(body), secret) {
		t.Error("autodiscover: the answer holds the secret")
	}
	resp, err = e.Client.Post(e.URL+"/autodiscover/autodiscover.xml", "text/xml", strings.NewReader("<not xml"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("autodiscover with a broken body: got %d, want 400", resp.StatusCode)
	}
}
