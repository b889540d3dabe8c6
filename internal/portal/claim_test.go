package portal_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/portal/demoidp"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
)

// TestClaimNamesOneUser: the username claim maps onto a directory user by
// exact match of portal.oidc.username_attribute; DN shapes and addresses
// (with the name attribute) are refused, and the session holds the
// canonical name, so the page lists what `apppass create --user
// alice@example.com` made (issue #13.5: the raw claim used to be passed on).
func TestClaimNamesOneUser(t *testing.T) {
	users := []demoidp.User{
		{Username: "ALICE"},
		{Username: "uid=alice,ou=people,dc=example,dc=com"},
		{Username: "alice@example.com"},
		{Username: "cn=dave"},
		{Username: "nobody"},
		{Username: "davemail", Email: "dave@example.com"},
	}
	for _, tt := range []struct {
		attr, claim string
		signIn      string
		want        string // "" = refused
	}{
		{"name", "", "ALICE", "alice"},
		{"name", "", "uid=alice,ou=people,dc=example,dc=com", ""},
		{"name", "", "alice@example.com", ""},
		{"name", "", "cn=dave", ""},
		{"name", "", "nobody", ""},
		{"mail", "email", "davemail", "dave"},
		{"mail", "", "alice@example.com", "alice"},
		{"mail", "", "ALICE", ""},
	} {
		t.Run(tt.attr+" "+tt.signIn, func(t *testing.T) {
			e := start(t, portaltest.Options{Users: users, Configure: func(c *config.Portal) {
				c.OIDC.UsernameAttribute = tt.attr
				if tt.claim != "" {
					c.OIDC.UsernameClaim = tt.claim
				}
			}})
			made, err := e.backend.Local.CreateAppPassword(context.Background(), control.CreateArgs{User: "Alice@Example.com", Name: "Made by CLI"})
			if err != nil {
				t.Fatal(err)
			}
			p := e.NewUser(t, tt.signIn).SignIn(t)
			if tt.want == "" {
				if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Unknown user") {
					t.Errorf("got %d, want 403 Unknown user:\n%s", p.Status, p.Body)
				}
				return
			}
			if p.Status != http.StatusOK || !strings.Contains(p.Body, tt.want) {
				t.Fatalf("got %d, want the page of %s:\n%s", p.Status, tt.want, p.Body)
			}
			if tt.want == "alice" && !strings.Contains(p.Body, made.AppPassword.Name) {
				t.Errorf("alice's page does not list %q made under alice@example.com", made.AppPassword.Name)
			}
		})
	}
}
