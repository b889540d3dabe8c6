package portal_test

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
)

func TestMultifactor(t *testing.T) {
	for _, tc := range []struct {
		name      string
		amr       []string
		acr       string
		configure func(*config.Portal)
		ok        bool
	}{
		{"otp", []string{"pwd", "otp"}, "", nil, true},
		{"hwk", []string{"hwk"}, "", nil, true},
		{"password only", []string{"pwd"}, "", nil, false},
		{"no amr", []string{}, "", nil, false},
		{"acr matches", []string{"pwd"}, "urn:mfa", func(c *config.Portal) { c.OIDC.MFAACR = "urn:mfa" }, true},
		{"acr differs", []string{"pwd"}, "urn:pwd", func(c *config.Portal) { c.OIDC.MFAACR = "urn:mfa" }, false},
		// #13.10: with mfa_acr set, acr must equal it; a multifactor amr
		// no longer passes on its own.
		{"acr set, amr otp, acr differs", []string{"pwd", "otp"}, "urn:pwd", func(c *config.Portal) { c.OIDC.MFAACR = "urn:mfa" }, false},
		{"acr set, amr otp, no acr", []string{"pwd", "otp"}, "", func(c *config.Portal) { c.OIDC.MFAACR = "urn:mfa" }, false},
		{"mfa not required", []string{"pwd"}, "", func(c *config.Portal) { c.OIDC.RequireMFA = false }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, portaltest.Options{Configure: tc.configure})
			e.IdP.SetAMR("alice", tc.amr, tc.acr)
			alice := e.NewUser(t, "alice")
			p := alice.SignIn(t)
			if tc.ok {
				if p.Status != 200 || !strings.Contains(p.Body, `id="create"`) {
					t.Errorf("got status %d without the page, want the page; body %.300s", p.Status, p.Body)
				}
				return
			}
			if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "App passwords need multifactor sign-in") {
				t.Errorf("got status %d, want 403 with the MFA message", p.Status)
			}
			if strings.Contains(p.Body, `id="create"`) || strings.Contains(p.Body, `name="csrf"`) {
				t.Error("the MFA page shows more than the message")
			}
			if again := alice.Get(t, "/"); !strings.HasPrefix(again.URL.String(), e.IdPURL) {
				t.Errorf("after the refusal, / went to %s, want the provider (no session)", again.URL)
			}
		})
	}
}

func TestReauthBeforeCreate(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	e.Clock.Advance(11 * time.Minute) // reauth_after is 10m
	if p := alice.Get(t, "/"); !strings.Contains(p.Body, "sign in again first") {
		t.Errorf("list with an old sign-in: want the hint that creating asks to sign in again")
	}
	// Do not follow: see where the POST goes.
	req, _ := http.NewRequest("POST", e.URL+"/passwords", strings.NewReader(url.Values{"csrf": {alice.CSRF}, "name": {"Laptop"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	u, _ := url.Parse(e.URL)
	for _, c := range alice.Client.Jar.Cookies(u) {
		req.AddCookie(c)
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?reauth=1" {
		t.Fatalf("create with an old sign-in: got %d to %q, want 303 to /login?reauth=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = e.Client.Get(e.URL + "/login?reauth=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if q := loc.Query(); q.Get("prompt") != "login" || q.Get("max_age") != "0" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Errorf("reauth redirect %s: want prompt=login, max_age=0, S256 PKCE, nonce and state", loc)
	}
	if recs, _ := e.backend.Store.List(t.Context(), "alice"); len(recs) != 0 {
		t.Errorf("a password was created without a fresh sign-in: %v", recs)
	}
	p := alice.SignInAt(t, "/login?reauth=1")
	if !strings.Contains(p.Body, "You signed in again") {
		t.Errorf("after reauth: want the notice; body %.300s", p.Body)
	}
	if _, s := create(t, alice, "Laptop", nil); s == "" {
		t.Error("create after reauth: no secret")
	}
}

// TestReauthWithoutAuthTime (#18.8): after prompt=login/max_age=0 an ID
// token without auth_time does not prove a fresh sign-in (OIDC Core
// §3.1.2.1): the sign-in is stale and creating still asks to sign in again.
func TestReauthWithoutAuthTime(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	e.Clock.Advance(11 * time.Minute)
	e.IdP.SetNoAuthTime("alice", true)
	p := alice.SignInAt(t, "/login?reauth=1")
	if !strings.Contains(p.Body, "did not ask you to sign in again") {
		t.Errorf("reauth without auth_time: want the stale notice; body %.300s", p.Body)
	}
	if _, s := create(t, alice, "Laptop", nil); s != "" {
		t.Error("create after a reauth without auth_time: got a secret, want a new sign-in first")
	}
	if recs, _ := e.backend.Store.List(t.Context(), "alice"); len(recs) != 0 {
		t.Errorf("store: got %d passwords, want 0", len(recs))
	}
	// With auth_time back, the same reauth is fresh.
	e.IdP.SetNoAuthTime("alice", false)
	if p := alice.SignInAt(t, "/login?reauth=1"); !strings.Contains(p.Body, "You signed in again") {
		t.Errorf("reauth with auth_time: want the fresh notice; body %.300s", p.Body)
	}
	if _, s := create(t, alice, "Laptop", nil); s == "" {
		t.Error("create after a fresh reauth: no secret")
	}
}

func TestSignInProblems(t *testing.T) {
	e := start(t, portaltest.Options{})
	t.Run("state mismatch", func(t *testing.T) {
		u := e.NewUser(t, "alice")
		p := u.Get(t, "/login") // at the provider now, with the login cookie
		if !strings.HasPrefix(p.URL.String(), e.IdPURL) {
			t.Fatalf("login went to %s", p.URL)
		}
		p = u.Get(t, "/callback?code=x&state=forged")
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "does not match") {
			t.Errorf("got %d, want 400 with the mismatch message", p.Status)
		}
	})
	t.Run("no login cookie", func(t *testing.T) {
		u := e.NewUser(t, "alice")
		if p := u.Get(t, "/callback?code=x&state=y"); p.Status != http.StatusBadRequest {
			t.Errorf("got %d, want 400", p.Status)
		}
	})
	t.Run("provider error", func(t *testing.T) {
		resp, err := e.Client.Get(e.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		req := withCookies(t, e.URL+"/callback?error=access_denied&state="+url.QueryEscape(loc.Query().Get("state")), resp.Cookies())
		resp, err = e.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("got %d, want 401", resp.StatusCode)
		}
		for _, c := range resp.Cookies() {
			if strings.Contains(c.Name, "session") && c.Value != "" {
				t.Errorf("a session cookie was set: %s", c.Name)
			}
		}
	})
}

func TestLazyDiscovery(t *testing.T) {
	b := portaltest.NewBackend(t, dirUsers, 0)
	cfg := config.Default().Portal
	cfg.OIDC.Issuer, cfg.OIDC.ClientID = "http://127.0.0.1:1", "legate" // nothing listens
	cfg.SessionKeyFile = filepath.Join(t.TempDir(), "portal.key")
	p, err := portal.New(portal.Options{Control: b.Local, Config: cfg, ExternalURL: "http://127.0.0.1:8080", ClientSecret: "s"})
	if err != nil {
		t.Fatalf("New with an unreachable provider: %v, want success (lazy discovery)", err)
	}
	rec := newRecorder()
	p.ServeHTTP(rec, httpRequest("GET", "/login"))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "cannot be reached") {
		t.Errorf("login: got %d, want 502 with a message", rec.Code)
	}
	fi, err := os.Stat(cfg.SessionKeyFile)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != portal.KeySize {
		t.Errorf("session key file: got %v %v, want 0600 and %d bytes", fi.Mode(), err, portal.KeySize)
	}
}

func TestNewRefuses(t *testing.T) {
	b := portaltest.NewBackend(t, dirUsers, 0)
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.key")
	os.WriteFile(loose, bytes.Repeat([]byte{1}, 32), 0o644)
	base := func() config.Portal {
		c := config.Default().Portal
		c.OIDC.Issuer, c.OIDC.ClientID = "https://idp.example", "legate"
		c.SessionKeyFile = filepath.Join(dir, "ok.key")
		return c
	}
	for _, tc := range []struct {
		name string
		o    portal.Options
		want string
	}{
		{"plain http off loopback", portal.Options{Config: base(), ExternalURL: "http://legate.example.com"}, "plain HTTP is only for loopback"},
		{"no issuer", portal.Options{Config: func() config.Portal { c := base(); c.OIDC.Issuer = ""; return c }(), ExternalURL: "https://l.example", TLS: true}, "issuer"},
		{"key file readable by others", portal.Options{Config: func() config.Portal { c := base(); c.SessionKeyFile = loose; return c }(), ExternalURL: "https://l.example", TLS: true}, "want 0600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Control = b.Local
			_, err := portal.New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
