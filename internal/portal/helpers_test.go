package portal_test

import (
	"context"
	"github.com/legate-proxy/legate/internal/login"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"testing"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/portal/demoidp"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
)

// The directory of the tests: alice and dave are ordinary users, root is
// an administrator, mallory signs in without a second factor.
var dirUsers = []directory.StaticUser{
	{Name: "alice", Addresses: []string{"alice@example.com"}},
	{Name: "dave", Addresses: []string{"dave@example.com"}},
	{Name: "root", Admin: true},
	{Name: "mallory"},
}

var idpUsers = []demoidp.User{
	{Username: "alice", Name: "Alice Example", Email: "alice@example.com"},
	{Username: "dave", Name: "Dave Example"},
	{Username: "root", Name: "Root"},
	{Username: "mallory", AMR: []string{"pwd"}},
}

type testEnv struct {
	*portaltest.Env
	backend *portaltest.Backend
}

func start(t *testing.T, o portaltest.Options) *testEnv {
	t.Helper()
	b := portaltest.NewBackend(t, dirUsers, 0)
	o.Control = b.Local
	if o.Users == nil {
		o.Users = idpUsers
	}
	return &testEnv{Env: portaltest.Start(t, o), backend: b}
}

// imapLogin asks the login service whether secret logs user in over IMAP.
func (e *testEnv) imapLogin(user, secret string) bool {
	res := e.backend.Auth.Login(context.Background(), login.Request{User: user, Secret: secret,
		IP: netip.MustParseAddr("127.0.0.1"), Protocol: "imap", TLS: true, Client: "portal test"})
	return res.Allowed()
}

var secretRE = regexp.MustCompile(`data-secret="([A-Z0-9a-z]{4}-[A-Z0-9a-z]{4}-[A-Z0-9a-z]{4}-[A-Z0-9a-z]{4})"`)

// create posts the create form and returns the page and the secret shown.
func create(t *testing.T, u *portaltest.User, name string, extra url.Values) (*portaltest.Page, string) {
	t.Helper()
	f := url.Values{"csrf": {u.CSRF}, "name": {name}}
	for k, v := range extra {
		f[k] = v
	}
	p := u.Post(t, "/passwords", f)
	m := secretRE.FindStringSubmatch(p.Body)
	if m == nil {
		return p, ""
	}
	return p, m[1]
}

var regexpScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func httpRequest(method, path string) *http.Request { return httptest.NewRequest(method, path, nil) }
