package portal_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
)

// TestReload (#14.5): Reload swaps client settings, reauth_after, the MFA
// rule and the OIDC client as one value; a bad section is refused and the
// running settings stay.
func TestReload(t *testing.T) {
	e := start(t, portaltest.Options{})
	alice := e.NewUser(t, "alice")
	alice.SignIn(t)

	cfg := e.Config()
	cfg.ClientSettings.IMAP.Host = "imap.reloaded.example"
	cfg.ReauthAfter = config.Duration(time.Hour)
	cfg.OIDC.MFAACR = "urn:example:mfa"
	if err := e.Portal.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	e.Clock.Advance(12 * time.Minute) // stale under the old 10m, fresh under 1h
	p, secret := create(t, alice, "Laptop", nil)
	if secret == "" {
		t.Fatalf("create 12 minutes after sign-in with reauth_after 1h: no secret (status %d)", p.Status)
	}
	if !strings.Contains(p.Body, "imap.reloaded.example") {
		t.Error("created page: want the reloaded IMAP host")
	}
	// The MFA rule: acr must now be urn:example:mfa; dave's amr otp is not enough.
	if p := e.NewUser(t, "dave").SignIn(t); p.Status != http.StatusForbidden {
		t.Errorf("sign-in without the acr after reload: got %d, want 403", p.Status)
	}
	e.IdP.SetAMR("dave", []string{"pwd"}, "urn:example:mfa")
	if p := e.NewUser(t, "dave").SignIn(t); p.Status != http.StatusOK {
		t.Errorf("sign-in with the acr after reload: got %d, want 200", p.Status)
	}

	// A section that cannot be used (the secret file is missing): refused,
	// the running settings stay.
	bad := cfg
	bad.ClientSettings.IMAP.Host = "imap.bad.example"
	bad.OIDC.ClientSecretFile = filepath.Join(t.TempDir(), "missing")
	if err := e.Portal.Reload(bad); err == nil {
		t.Error("Reload with a missing client secret file: got nil, want an error")
	}
	if _, s := create(t, alice, "Phone", nil); s == "" {
		t.Error("create after a refused reload: no secret")
	}

	// A new issuer is discovered again: nothing listens there, so sign-in
	// now says the provider is unreachable.
	moved := cfg
	moved.OIDC.Issuer = "http://127.0.0.1:1"
	if err := e.Portal.Reload(moved); err != nil {
		t.Fatal(err)
	}
	resp, err := e.Client.Get(e.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("login after moving the issuer: got %d, want 502 (rediscovery)", resp.StatusCode)
	}
}
