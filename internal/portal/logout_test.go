package portal_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store/etcd"
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

// TestLogoutEndsSessionOnEveryInstance (#18.7 with several instances): two
// portals with the same session key share sign-outs through a real etcd
// store (store.SignOuts), as two Legate instances on one etcd do. A cookie
// copied before alice signs out on A is refused by B afterwards.
func TestLogoutEndsSessionOnEveryInstance(t *testing.T) {
	etc := testenv.StartEtcd(t, 1)
	dir := t.TempDir()
	open := func() *etcd.Store {
		s, err := etcd.Open(t.Context(), etcd.Options{Endpoints: etc.Endpoints(), KeyFile: filepath.Join(dir, "hmac.key"),
			FlushInterval: time.Hour, DialTimeout: 5 * time.Second, Logger: portaltest.TestLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	key := filepath.Join(dir, "portal.key")
	shareKey := func(c *config.Portal) { c.SessionKeyFile = key }
	a := start(t, portaltest.Options{Configure: shareKey, SignOuts: open()})
	b := start(t, portaltest.Options{Configure: shareKey, SignOuts: open()})

	alice := a.NewUser(t, "alice")
	alice.SignIn(t)
	stolen := copiedCookies(t, a, alice)
	if resp := getWith(t, b, "/", stolen); resp.StatusCode != http.StatusOK {
		t.Fatalf("A's cookie on B before sign-out: got %d, want 200 (one session key)", resp.StatusCode)
	}
	if p := alice.Post(t, "/logout", url.Values{"csrf": {alice.CSRF}}); p.Status != http.StatusOK {
		t.Fatalf("logout on A: got %d, want 200", p.Status)
	}
	for name, e := range map[string]*testEnv{"A": a, "B": b} {
		if resp := getWith(t, e, "/", stolen); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("copied cookie on %s after sign-out on A: got %d to %q, want 303 to /login", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// failingSignOuts cannot answer.
type failingSignOuts struct{}

func (failingSignOuts) EndSession(context.Context, string, time.Time) error {
	return errors.New("etcd unavailable")
}
func (failingSignOuts) SessionEnded(context.Context, string) (bool, error) {
	return false, errors.New("etcd unavailable")
}

// TestSharedSignOutsFailClosed: when the shared sign-outs cannot answer, a
// session counts as signed out (the user is asked to sign in again) rather
// than one that may have been.
func TestSharedSignOutsFailClosed(t *testing.T) {
	e := start(t, portaltest.Options{SignOuts: failingSignOuts{}})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)
	if resp := getWith(t, e, "/", copiedCookies(t, e, alice)); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("with the shared sign-outs down: got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
}
