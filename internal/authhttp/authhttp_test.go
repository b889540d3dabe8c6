package authhttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

type fakeLogin struct{ asked []auth.Request }

func (f *fakeLogin) Login(_ context.Context, r auth.Request) auth.Result {
	f.asked = append(f.asked, r)
	if r.Secret == "right" {
		return auth.Result{Decision: policy.Decision{Outcome: policy.Allow}, User: &directory.User{Name: "alice"}}
	}
	return auth.Result{Decision: policy.Decision{Outcome: policy.BadCredentials}}
}

func TestHandler(t *testing.T) {
	f := &fakeLogin{}
	h := Handler(Options{Login: f, Header: "X-Auth-Key", Secret: "s3",
		Upstream: func(p string) *upstream.Config {
			if p == policy.IMAP {
				return &upstream.Config{Address: "127.0.0.1:1143", MasterUser: "legate", MasterPassword: "mpw"}
			}
			return &upstream.Config{Address: "[::1]:587"}
		}})
	do := func(hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/auth", nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	base := func(mod map[string]string) map[string]string {
		m := map[string]string{"X-Auth-Key": "s3", "Auth-Method": "plain", "Auth-User": "Alice@Example.com", "Auth-Pass": "right",
			"Auth-Protocol": "imap", "Client-IP": "192.0.2.1", "Auth-SSL": "on"}
		for k, v := range mod {
			m[k] = v
		}
		return m
	}
	w := do(base(nil))
	if hd := w.Header(); hd.Get("Auth-Status") != "OK" || hd.Get("Auth-Server") != "127.0.0.1" || hd.Get("Auth-Port") != "1143" ||
		hd.Get("Auth-User") != "alice*legate" || hd.Get("Auth-Pass") != "mpw" {
		t.Errorf("allow: %v", hd)
	}
	if r := f.asked[0]; r.IP.String() != "192.0.2.1" || !r.TLS || r.Protocol != policy.IMAP || r.Client != "nginx/imap" {
		t.Errorf("login request %+v", r)
	}
	w = do(base(map[string]string{"Auth-Pass": "wrong"}))
	if hd := w.Header(); hd.Get("Auth-Status") != "Invalid login or password" || hd.Get("Auth-Wait") == "" || hd.Get("Auth-User") != "" {
		t.Errorf("wrong password: %v", hd)
	}
	w = do(base(map[string]string{"Auth-Pass": "wrong", "Auth-Protocol": "smtp"}))
	if hd := w.Header(); hd.Get("Auth-Error-Code") != "535 5.7.8" {
		t.Errorf("smtp wrong password: %v", hd)
	}
	w = do(base(map[string]string{"Auth-Protocol": "smtp"}))
	if hd := w.Header(); hd.Get("Auth-Status") != "OK" || hd.Get("Auth-Server") != "::1" || hd.Get("Auth-User") != "" {
		t.Errorf("smtp allow: %v", hd)
	}
	n := len(f.asked)
	for _, m := range []map[string]string{
		base(map[string]string{"X-Auth-Key": ""}), base(map[string]string{"X-Auth-Key": "s4"}),
	} {
		if w := do(m); w.Code != http.StatusForbidden {
			t.Errorf("secret %q: %d, want 403", m["X-Auth-Key"], w.Code)
		}
	}
	for _, m := range []map[string]string{
		base(map[string]string{"Auth-Method": "apop"}), base(map[string]string{"Auth-Protocol": "pop3"}),
	} {
		if w := do(m); w.Header().Get("Auth-Status") == "OK" {
			t.Errorf("%v: allowed", m)
		}
	}
	if len(f.asked) != n {
		t.Errorf("refused requests reached the login service")
	}
}
