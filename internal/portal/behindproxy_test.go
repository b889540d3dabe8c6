package portal_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
	"github.com/legate-proxy/legate/internal/testenv"
)

// logBuffer keeps the portal's log lines (and sends them to t.Log).
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ips returns the ip= of every log line whose message is msg.
func (l *logBuffer) ips(msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	re := regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `".* ip=(\S+)`)
	for _, line := range strings.Split(l.b.String(), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

func newLogBuffer(t *testing.T) (*logBuffer, *slog.Logger) {
	lb := &logBuffer{t: t}
	return lb, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// forged adds headers to every request a client sends.
type forged struct {
	rt  http.RoundTripper
	hdr map[string]string
}

func (f forged) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range f.hdr {
		r.Header.Set(k, v)
	}
	return f.rt.RoundTrip(r)
}

func trustProxies(nets ...string) func(*config.Portal) {
	return func(c *config.Portal) {
		for _, n := range nets {
			c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(n))
		}
	}
}

// TestForwardedOnlyFromTrusted (#16.2): X-Forwarded-For from a peer that
// is not in portal.trusted_proxies is ignored (the log names the peer);
// from a trusted proxy it names the client.
func TestForwardedOnlyFromTrusted(t *testing.T) {
	for _, tc := range []struct {
		name, trusted, want string
	}{
		{"untrusted peer", "192.0.2.0/24", "127.0.0.1"},
		{"trusted proxy", "127.0.0.1/32", "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lb, log := newLogBuffer(t)
			e := start(t, portaltest.Options{Logger: log, Configure: trustProxies(tc.trusted)})
			u := e.NewUser(t, "alice")
			u.Client.Transport = forged{rt: u.Client.Transport, hdr: map[string]string{"X-Forwarded-For": "203.0.113.9"}}
			u.SignIn(t)
			if got := lb.ips("portal: signed in"); len(got) != 1 || got[0] != tc.want {
				t.Errorf("sign-in logged from %v, want [%s]", got, tc.want)
			}
		})
	}
}

// TestBehindNginx (#16.2): nginx terminates TLS in front of the portal,
// which serves plain HTTP on loopback with portal.trusted_proxies
// 127.0.0.1/32 and an https external URL. A real browser signs in, creates
// and revokes a password through nginx; cookies are Secure and __Host-,
// the security headers arrive; an X-Forwarded-For a client sends to nginx
// does not reach the log (nginx sets it from the peer).
func TestBehindNginx(t *testing.T) {
	certs := testenv.NewCerts(t)
	ngAddr := testenv.FreeAddr(t)
	lb, log := newLogBuffer(t)
	e := start(t, portaltest.Options{Logger: log, ExternalURL: "https://" + ngAddr, Configure: trustProxies("127.0.0.1/32")})
	backend, _ := url.Parse(e.Direct)
	portaltest.StartNginx(t, portaltest.NginxOptions{Addr: ngAddr, Backend: backend.Host, CertFile: certs.CertFile, KeyFile: certs.KeyFile})
	e.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.CAPool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := e.Client.Get(e.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET /login through nginx: got %d, want 302 to the provider", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if !c.Secure || !strings.HasPrefix(c.Name, "__Host-") {
			t.Errorf("cookie %s: Secure %v, want a Secure __Host- cookie", c.Name, c.Secure)
		}
	}
	for _, h := range []string{"Strict-Transport-Security", "Content-Security-Policy", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("header %s missing through nginx", h)
		}
	}

	u := e.NewUser(t, "alice")
	u.Client.Transport = forged{rt: u.Client.Transport, hdr: map[string]string{"X-Forwarded-For": "203.0.113.9"}}
	if p := u.SignIn(t); p.Status != http.StatusOK || !strings.Contains(p.Body, `id="create"`) {
		t.Fatalf("sign-in through nginx: got %d, want the page", p.Status)
	}
	if got := lb.ips("portal: signed in"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("sign-in through nginx with a forged X-Forwarded-For logged from %v, want [127.0.0.1]", got)
	}

	b := portaltest.NewBrowser(t, e.Env)
	b.Lifecycle("dave", "Laptop", func(secret string) error {
		if !e.imapLogin("dave", secret) {
			return errLoginRefused
		}
		return nil
	})
	if loc := b.Location(); !strings.HasPrefix(loc, e.URL) {
		t.Errorf("browser ended on %s, want the nginx URL %s", loc, e.URL)
	}
	if got := lb.ips("portal: app password revoked"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("revoke logged from %v, want [127.0.0.1]", got)
	}
}

var errLoginRefused = errors.New("login refused")

// TestForwardedProtoHTTP: a GET a trusted proxy says came over plain http
// goes to the https external URL; the same header from anyone else is
// ignored.
func TestForwardedProtoHTTP(t *testing.T) {
	b := portaltest.NewBackend(t, dirUsers, 0)
	cfg := config.Default().Portal
	cfg.OIDC.Issuer, cfg.OIDC.ClientID = "https://idp.example", "legate"
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	p, err := portal.New(portal.Options{Control: b.Local, Config: cfg, ExternalURL: "https://legate.example.com",
		SessionKey: make([]byte, portal.KeySize), ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer string
		want int
	}{{"10.1.1.1:5000", http.StatusPermanentRedirect}, {"192.0.2.1:5000", http.StatusSeeOther}} {
		r := httpRequest("GET", "/?x=1")
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Forwarded-Proto", "http")
		rec := newRecorder()
		p.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("peer %s: got %d, want %d", tc.peer, rec.Code, tc.want)
		}
		if tc.want == http.StatusPermanentRedirect && rec.Header().Get("Location") != "https://legate.example.com/?x=1" {
			t.Errorf("peer %s: redirect to %q", tc.peer, rec.Header().Get("Location"))
		}
	}
}
