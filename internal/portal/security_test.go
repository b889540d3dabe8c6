package portal_test

import (
	"crypto/sha256"
	"encoding/base64"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/portal/portaltest"
	"github.com/legate-proxy/legate/store"
)

func TestSecurityHeaders(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	page, secret := create(t, alice, "Laptop", nil)
	if secret == "" {
		t.Fatalf("create: no secret; status %d", page.Status)
	}
	m := regexpScript.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatal("the created page has no inline script")
	}
	sum := sha256.Sum256([]byte(m[1]))
	wantHash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"

	list := alice.Get(t, "/")
	for _, tc := range []struct {
		name   string
		h      http.Header
		cache  string
		secret bool
	}{
		{"list", list.Header, "no-store", false},
		{"created", page.Header, "no-store", true},
	} {
		h := tc.h
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "script-src " + wantHash, "base-uri 'none'", "form-action 'self' " + e.IdPURL} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q: want %q", tc.name, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows unsafe-inline: %q", tc.name, csp)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
			"X-Frame-Options": "DENY", "Cache-Control": tc.cache} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s: got %q, want %q", tc.name, k, got, want)
			}
		}
	}
	resp, err := e.Client.Get(e.URL + "/static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=3600" || resp.StatusCode != 200 {
		t.Errorf("style.css: got %d %q, want 200 and public caching", resp.StatusCode, got)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("style.css: nosniff missing")
	}
}

func TestCookies(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tls        bool
		cookieName string
	}{
		{"loopback dev", false, "legate-session"},
		{"https", true, "__Host-legate-session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, portaltest.Options{TLS: tc.tls})
			// Walk the sign-in by hand to see the Set-Cookie headers.
			u := e.NewUser(t, "alice")
			var set []*http.Cookie
			u.Client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
				set = append(set, r.Response.Cookies()...)
				return nil
			}
			p := u.SignIn(t)
			if p.Status != 200 {
				t.Fatalf("sign-in: status %d", p.Status)
			}
			var c *http.Cookie
			for _, x := range set {
				if x.Name == tc.cookieName && x.Value != "" {
					c = x
				}
			}
			if c == nil {
				t.Fatalf("no %s cookie set; got %v", tc.cookieName, set)
			}
			if c.Secure != tc.tls || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("cookie: got Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q; want Secure=%v HttpOnly SameSite=Lax Path=/ no Domain",
					c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain, tc.tls)
			}
			if strings.Contains(c.Value, "alice") {
				t.Errorf("cookie value shows the user name in clear: %q", c.Value)
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	for _, tc := range []struct {
		name   string
		form   url.Values
		origin string
	}{
		{"no token", url.Values{"name": {"Forged"}}, ""},
		{"wrong token", url.Values{"name": {"Forged"}, "csrf": {"AAAA"}}, ""},
		{"token from another origin", url.Values{"name": {"Forged"}, "csrf": {alice.CSRF}}, "https://evil.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", e.URL+"/passwords", strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
				req.Header.Set("Sec-Fetch-Site", "cross-site")
			}
			resp, err := alice.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status: got %d, want 403", resp.StatusCode)
			}
		})
	}
	// A revoke-all without the token does nothing either.
	if _, s := create(t, alice, "Real", nil); s == "" {
		t.Fatal("create with the token failed")
	}
	if p := alice.Post(t, "/passwords/revoke-all", url.Values{}); p.Status != http.StatusForbidden {
		t.Errorf("revoke-all without token: got %d, want 403", p.Status)
	}
	recs, _ := e.backend.Store.List(t.Context(), "alice")
	if len(recs) != 1 || recs[0].Name != "Real" {
		t.Errorf("store after forged posts: got %v, want only Real", recs)
	}
}

func TestSessionExpiry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []time.Duration // clock advances, with a page view after each
		ok    bool
	}{
		{"active", []time.Duration{14 * time.Minute, 14 * time.Minute}, true},
		{"idle", []time.Duration{16 * time.Minute}, false},
		{"absolute", append(repeat(14*time.Minute, 34), 14*time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, portaltest.Options{})
			alice := e.NewUser(t, "alice")
			alice.SignIn(t)
			var p *portaltest.Page
			for _, d := range tc.steps {
				e.Clock.Advance(d)
				p = alice.Get(t, "/")
			}
			onList := p.URL.String() == e.URL+"/"
			onIdP := strings.HasPrefix(p.URL.String(), e.IdPURL+"/signin")
			if tc.ok && !onList || !tc.ok && !onIdP {
				t.Errorf("after %v: landed on %s, want %s", tc.steps, p.URL, map[bool]string{true: "the list", false: "the sign-in page"}[tc.ok])
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestTamperedCookie(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	u, _ := url.Parse(e.URL)
	cs := alice.Client.Jar.Cookies(u)
	if len(cs) == 0 {
		t.Fatal("no cookie")
	}
	for _, c := range cs {
		b := []byte(c.Value)
		b[len(b)/2] ^= 1
		c.Value = string(b)
	}
	alice.Client.Jar.SetCookies(u, cs)
	resp, err := e.Client.Do(withCookies(t, e.URL+"/", cs))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("tampered cookie: got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func withCookies(t *testing.T, u string, cs []*http.Cookie) *http.Request {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		req.AddCookie(c)
	}
	return req
}

func TestCreateRefusals(t *testing.T) {
	e := start(t, portaltest.Options{})
	t.Run("limit", func(t *testing.T) {
		alice := e.NewUser(t, "alice")
		alice.SignIn(t)
		for i := range 40 {
			if _, s := create(t, alice, "Device "+string(rune('A'+i/26))+string(rune('a'+i%26)), nil); s == "" {
				t.Fatalf("create %d: no secret", i+1)
			}
		}
		p, s := create(t, alice, "One too many", nil)
		if s != "" || p.Status != http.StatusConflict || !strings.Contains(p.Body, "already has 40 app passwords (the limit is 40): revoke one first") {
			t.Errorf("41st: got status %d secret %q, want 409 with the limit message; body %.400s", p.Status, s, p.Body)
		}
	})
	t.Run("admin", func(t *testing.T) {
		root := e.NewUser(t, "root")
		root.SignIn(t)
		p, s := create(t, root, "Laptop", nil)
		if s != "" || p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Administrators cannot have app passwords") {
			t.Errorf("admin: got status %d secret %q, want 403 with the admin message", p.Status, s)
		}
	})
	t.Run("form", func(t *testing.T) {
		dave := e.NewUser(t, "dave")
		dave.SignIn(t)
		for _, tc := range []struct {
			name, value, want string
		}{
			{"networks", "10.0.0.1/8", "has host bits set; did you mean 10.0.0.0/8?"},
			{"networks", "not-an-ip", "is not an IP address or network"},
			{"expires", "forever", "choose an expiry from the list"},
			{"scope", "pop3", "unknown protocol"},
		} {
			p, s := create(t, dave, "Laptop", url.Values{tc.name: {tc.value}})
			if s != "" || p.Status != http.StatusUnprocessableEntity || !strings.Contains(p.Body, tc.want) {
				t.Errorf("%s=%q: got status %d secret %q, want 422 with %q", tc.name, tc.value, p.Status, s, tc.want)
			}
		}
		// The form keeps what was typed.
		p, _ := create(t, dave, "Scanner", url.Values{"networks": {"bad"}})
		if !strings.Contains(p.Body, `value="Scanner"`) {
			t.Error("the form lost the name after an error")
		}
		// A valid scoped one.
		_, s := create(t, dave, "Printer", url.Values{"scope": {"smtp"}, "networks": {"192.0.2.7, 2001:db8::/48"}, "expires": {"30d"}})
		recs, _ := e.backend.Store.List(t.Context(), "dave")
		if s == "" || len(recs) != 1 || strings.Join(recs[0].Scope, ",") != "smtp" || len(recs[0].Networks) != 2 || recs[0].Expires.IsZero() {
			t.Errorf("scoped create: got %+v", recs)
		}
	})
}

func TestAuditAndLogs(t *testing.T) {
	var logs logintest.LogBuffer
	e := start(t, portaltest.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	_, secret := create(t, alice, "Laptop", nil)
	if secret == "" {
		t.Fatal("no secret")
	}
	alice.Post(t, "/passwords/revoke-all", url.Values{"csrf": {alice.CSRF}})
	if err := e.backend.Store.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, err := e.backend.Store.AuditLog(t.Context(), store.AuditQuery{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Action+"/"+r.Via+"/"+r.Outcome)
	}
	if want := "create/portal/ok revoke/portal/ok"; strings.Join(got, " ") != want {
		t.Errorf("audit: got %q, want %q", strings.Join(got, " "), want)
	}
	for _, s := range []string{secret, strings.ReplaceAll(secret, "-", "")} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the secret is in the logs")
		}
	}
}
