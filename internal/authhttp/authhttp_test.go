package authhttp

import (
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// rightSecret allows alice with "right".
func rightSecret(r login.Request) login.Result {
	if r.Secret == "right" {
		return logintest.Allow("alice", "")
	}
	return logintest.Deny("")
}

func TestHandler(t *testing.T) {
	f := &logintest.Auth{Decide: rightSecret}
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
	if r := f.Requests()[0]; r.IP.String() != "192.0.2.1" || !r.TLS || r.Protocol != policy.IMAP || r.Client != "nginx/imap" {
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
	n := len(f.Requests())
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
	if len(f.Requests()) != n {
		t.Errorf("refused requests reached the login service")
	}
}
