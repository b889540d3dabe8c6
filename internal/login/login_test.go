package login_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"github.com/legate-proxy/legate/policy"
)

// The contract is a leaf: besides the standard library it imports only
// policy (itself a leaf), so every front-end can import it for free.
func TestLoginIsALeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"github.com/legate-proxy/legate/internal/login").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	want := map[string]bool{"github.com/legate-proxy/legate/policy": true, "github.com/legate-proxy/legate/internal/login": true}
	for _, p := range strings.Fields(string(out)) {
		if !want[p] {
			t.Errorf("internal/login depends on %s; want only policy and the standard library", p)
		}
	}
}

func TestAppPasswordID(t *testing.T) {
	if got := (login.Result{}).AppPasswordID(); got != "" {
		t.Errorf("no app password: got %q, want empty", got)
	}
	res := logintest.BySecret(login.Request{Secret: "allow"})
	if got := res.AppPasswordID(); got != "ap1" {
		t.Errorf("allowed fake login: got app password %q, want ap1", got)
	}
	if !res.Allowed() || res.User == nil || res.User.Name != "alice" {
		t.Errorf("allowed fake login: got %+v, want alice allowed", res)
	}
	if res := logintest.BySecret(login.Request{Secret: "bad"}); res.Outcome != policy.BadCredentials || res.User != nil {
		t.Errorf("bad secret: got %+v, want bad credentials and no user", res)
	}
}
