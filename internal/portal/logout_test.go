package portal_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/internal/portal/portaltest"
)

// copiedCookies are the cookies a user's jar holds for the portal (a copy,
// as an attacker who stole them would have).
func copiedCookies(t *testing.T, e *testEnv, u *portaltest.User) []*http.Cookie {
	t.Helper()
	pu, _ := url.Parse(e.URL)
	cs := u.Client.Jar.Cookies(pu)
	if len(cs) == 0 {
		t.Fatal("no cookies to copy")
	}
	return cs
}

// getWith fetches path with exactly these cookies (no redirects followed).
func getWith(t *testing.T, e *testEnv, path string, cs []*http.Cookie) *http.Response {
	t.Helper()
	req := withCookies(t, e.URL+path, cs)
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestLogoutEndsSession (#18.7): a cookie copied before sign-out is refused
// afterwards — also after the portal restarts — while another session of
// the same user keeps working.
func TestLogoutEndsSession(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice, other := e.NewUser(t, "alice"), e.NewUser(t, "alice")
	alice.SignIn(t)
	other.SignIn(t)
	stolen := copiedCookies(t, e, alice)
	if resp := getWith(t, e, "/", stolen); resp.StatusCode != http.StatusOK {
		t.Fatalf("copied cookie before sign-out: got %d, want 200", resp.StatusCode)
	}
	if p := alice.Post(t, "/logout", url.Values{"csrf": {alice.CSRF}}); p.Status != http.StatusOK || !strings.Contains(p.Body, "signed out") {
		t.Fatalf("logout: got %d, want 200 and the signed-out page", p.Status)
	}
	check := func(when string) {
		t.Helper()
		if resp := getWith(t, e, "/", stolen); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("%s: copied cookie: got %d to %q, want 303 to /login", when, resp.StatusCode, resp.Header.Get("Location"))
		}
		// Nor can it create a password (within reauth_after).
		f := url.Values{"csrf": {alice.CSRF}, "name": {"Stolen"}}
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/passwords", strings.NewReader(f.Encode()))
		for _, c := range stolen {
			req.AddCookie(c)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := e.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s: create with the copied cookie: got 200", when)
		}
		if recs, _ := e.backend.Store.List(t.Context(), "alice"); len(recs) != 0 {
			t.Errorf("%s: a password was created with a signed-out cookie", when)
		}
		if p := other.Get(t, "/"); p.Status != http.StatusOK || !strings.Contains(p.Body, `id="create"`) {
			t.Errorf("%s: alice's other session: got %d, want the page", when, p.Status)
		}
	}
	check("after sign-out")
	e.Restart()
	check("after a restart")
}
