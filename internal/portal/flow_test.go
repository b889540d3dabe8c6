package portal_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/internal/portal/portaltest"
)

func TestCreateUseRevokeOverHTTP(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	p := alice.SignIn(t)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "You have no app passwords yet") {
		t.Fatalf("after sign-in: got status %d, body %.300q; want the empty list", p.Status, p.Body)
	}
	p, secret := create(t, alice, "Laptop", nil)
	if p.Status != http.StatusOK || secret == "" {
		t.Fatalf("create: got status %d, secret %q; want 200 and a secret. Body: %.500s", p.Status, secret, p.Body)
	}
	if p.URL.Path != "/passwords" {
		t.Errorf("create: the secret came at %s, want the POST response itself (no redirect)", p.URL)
	}
	if !e.imapLogin("alice", secret) {
		t.Fatalf("IMAP login with the new password: got deny, want allow")
	}
	list := alice.Get(t, "/")
	if !strings.Contains(list.Body, "Laptop") || strings.Contains(list.Body, secret) {
		t.Fatalf("list: want Laptop and not the secret; body %.500s", list.Body)
	}
	recs, _ := e.backend.Local.ListAppPasswords(t.Context(), "alice")
	if len(recs) != 1 {
		t.Fatalf("got %d app passwords, want 1", len(recs))
	}
	p = alice.Post(t, "/passwords/"+recs[0].ID+"/revoke", url.Values{"csrf": {alice.CSRF}})
	if !strings.Contains(p.Body, "Revoked “Laptop”") {
		t.Errorf("revoke: want the notice; body %.500s", p.Body)
	}
	if e.imapLogin("alice", secret) {
		t.Fatalf("IMAP login after revoke: got allow, want deny")
	}
}
