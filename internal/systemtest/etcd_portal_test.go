package systemtest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal/demoidp"
	"github.com/legate-proxy/legate/internal/testenv"
)

// TestEtcdPortalSignOutAcross (#18.7 with two instances): two `legate
// serve` daemons share an etcd store and one portal session key; alice
// signs in on A and copies her cookie; once she signs out on A, B refuses
// the copy too (store.SignOuts through etcd, wired by the daemon).
func TestEtcdPortalSignOutAcross(t *testing.T) {
	testenv.Require(t, "etcd")
	e := testenv.StartEtcd(t, 1)
	dir := t.TempDir()
	hmacKey, sessionKey := filepath.Join(dir, "hmac.key"), filepath.Join(dir, "portal.key")
	idpSrv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(idpSrv.Close)
	addrA, addrB := testenv.FreeAddr(t), testenv.FreeAddr(t)
	extA, extB := "https://"+addrA, "https://"+addrB
	idp, err := demoidp.New(demoidp.Options{Issuer: idpSrv.URL, ClientID: "legate-portal", ClientSecret: "portal-secret",
		RedirectURIs: []string{extA + "/callback", extB + "/callback"}, Users: []demoidp.User{{Username: "alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	idpSrv.Config.Handler = idp
	oidcSecret := writeSecret(t, dir, "oidc.secret", "portal-secret")
	instance := func(addr, ext string) *Legate {
		return StartLegate(t, LegateOptions{Mutate: func(c *config.Config) {
			c.Storage.Backend = "etcd"
			c.Storage.KeyFile = hmacKey
			c.Storage.Etcd = config.Etcd{Endpoints: e.Endpoints(), Prefix: "/legate-portal-test/"}
			c.Listen.Portal = addr
			c.Portal.ExternalURL = ext
			c.Portal.SessionKeyFile = sessionKey
			c.Portal.OIDC.Issuer, c.Portal.OIDC.ClientID = idpSrv.URL, "legate-portal"
			c.Portal.OIDC.ClientSecretFile = oidcSecret
		}})
	}
	a, b := instance(addrA, extA), instance(addrB, extB)

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: a.ClientTLS()}}
	resp, err := client.Get(extA + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = client.PostForm(idpSrv.URL+"/signin", url.Values{"id": {resp.Request.URL.Query().Get("id")},
		"username": {"alice"}, "code": {idp.Code("alice")}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), extA) {
		t.Fatalf("sign-in on A: landed on %s (%d), want A's page", resp.Request.URL, resp.StatusCode)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on A's page")
	}
	uA, _ := url.Parse(extA)
	stolen := jar.Cookies(uA)

	// The copy, sent to B as it is (one session key: B reads A's cookie).
	onB := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, extB+"/", nil)
		for _, c := range stolen {
			req.AddCookie(c)
		}
		bare := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: b.ClientTLS()},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := bare.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := onB(); resp.StatusCode != http.StatusOK {
		t.Fatalf("A's cookie on B before sign-out: got %d, want 200", resp.StatusCode)
	}
	resp, err = client.PostForm(extA+"/logout", url.Values{"csrf": {string(m[1])}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-out on A: got %d, want 200", resp.StatusCode)
	}
	if resp := onB(); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("A's cookie on B after sign-out on A: got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
}
