package portaltest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// User is an HTTP client with its own cookie jar: one person's browser
// without the browser.
type User struct {
	Name   string
	Client *http.Client // follows redirects, keeps cookies
	env    *Env
	// CSRF is the token of the last page that had a form.
	CSRF string
}

// NewUser returns a client with an empty cookie jar.
func (e *Env) NewUser(t testing.TB, name string) *User {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: e.Client.Transport, Jar: jar, Timeout: e.Client.Timeout}
	return &User{Name: name, Client: c, env: e}
}

// Page is a response with its body read.
type Page struct {
	Status int
	URL    *url.URL // after redirects
	Header http.Header
	Body   string
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (u *User) read(t testing.TB, resp *http.Response, err error) *Page {
	t.Helper()
	if err != nil {
		t.Fatalf("portaltest: %s: %v", u.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("portaltest: %s: read: %v", u.Name, err)
	}
	p := &Page{Status: resp.StatusCode, URL: resp.Request.URL, Header: resp.Header, Body: string(b)}
	if m := csrfRE.FindStringSubmatch(p.Body); m != nil {
		u.CSRF = m[1]
	}
	return p
}

// Get fetches a portal path (following redirects).
func (u *User) Get(t testing.TB, path string) *Page {
	t.Helper()
	resp, err := u.Client.Get(u.env.URL + path)
	return u.read(t, resp, err)
}

// Post posts a form to a portal path (following redirects). The CSRF
// token is not added: put it in form when wanted.
func (u *User) Post(t testing.TB, path string, form url.Values) *Page {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u.env.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := u.Client.Do(req)
	return u.read(t, resp, err)
}

// SignIn goes through the whole sign-in: the portal's /login, the
// provider's sign-in form with the user's code, the callback. It returns
// the page the portal shows at the end (the list, or a refusal).
func (u *User) SignIn(t testing.TB) *Page {
	t.Helper()
	return u.SignInAt(t, "/login")
}

// SignInAt is SignIn starting from a portal path (e.g. "/" or
// "/login?reauth=1").
func (u *User) SignInAt(t testing.TB, path string) *Page {
	t.Helper()
	p := u.Get(t, path)
	if p.Status != http.StatusOK || !strings.HasPrefix(p.URL.String(), u.env.IdPURL+"/signin") {
		t.Fatalf("portaltest: %s: sign-in: landed on %s (status %d), want the provider's sign-in page", u.Name, p.URL, p.Status)
	}
	id := p.URL.Query().Get("id")
	resp, err := u.Client.PostForm(u.env.IdPURL+"/signin", url.Values{
		"id": {id}, "username": {u.Name}, "code": {u.env.IdP.Code(u.Name)}})
	return u.read(t, resp, err)
}
