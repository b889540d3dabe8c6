package demoidp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/internal/portal/demoidp"
)

func TestDiscoveryAndSignInRefusal(t *testing.T) {
	var p *demoidp.Provider
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.ServeHTTP(w, r) }))
	defer srv.Close()
	var err error
	p, err = demoidp.New(demoidp.Options{Issuer: srv.URL, ClientID: "c", ClientSecret: "s",
		RedirectURIs: []string{"http://127.0.0.1:1/callback"}, Users: []demoidp.User{{Username: "demo"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Code("demo"); len(c) != 8 {
		t.Errorf("generated code: got %q, want 8 characters", c)
	}
	resp, err := http.Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Issuer  string   `json:"issuer"`
		Methods []string `json:"code_challenge_methods_supported"`
		JWKS    string   `json:"jwks_uri"`
	}
	json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if d.Issuer != srv.URL || !slices.Contains(d.Methods, "S256") || !strings.HasPrefix(d.JWKS, srv.URL) {
		t.Errorf("discovery: got %+v, want issuer %s, S256 and a jwks_uri", d, srv.URL)
	}
	resp, err = http.PostForm(srv.URL+"/signin", url.Values{"id": {"x"}, "username": {"demo"}, "code": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong code: got %d, want 401", resp.StatusCode)
	}
}

func TestNewRequires(t *testing.T) {
	if _, err := demoidp.New(demoidp.Options{Issuer: "http://127.0.0.1:1"}); err == nil {
		t.Error("New without client: got nil error")
	}
}
