package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/oauth"
	"github.com/legate-proxy/legate/internal/testenv/oauthserver"
)

// introspect asks the server about tok as the resource server "mail".
func introspect(t *testing.T, s *oauthserver.Server, tok string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.IntrospectionURL, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("mail", "mail-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("introspection: %v", err)
	}
	return m
}

func start(t *testing.T) *oauthserver.Server {
	s := oauthserver.Start(t, oauthserver.Options{})
	s.AddResourceServer("mail", "mail-secret")
	return s
}

func TestClientSecret(t *testing.T) {
	s := start(t)
	s.AddApp("printer-app", "app-secret")
	f := &oauth.ClientCredentials{TokenURL: s.TokenURL, ClientID: "printer-app", Secret: "app-secret", Scopes: []string{"imap"}}
	tok, err := f.Fetch(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(tok.Expiry) < 50*time.Minute {
		t.Errorf("expiry %v, want about an hour", tok.Expiry)
	}
	m := introspect(t, s, tok.Access)
	if m["active"] != true || m["client_id"] != "printer-app" {
		t.Errorf("introspection %v, want active for printer-app", m)
	}

	f.Secret = "wrong"
	_, err = f.Fetch(context.Background(), "alice")
	if !errors.Is(err, oauth.ErrUnavailable) || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("wrong secret: got %v, want ErrUnavailable naming invalid_client", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q shows the secret", err)
	}
}

func TestCertificateAssertion(t *testing.T) {
	s := start(t)
	keyPEM, certPEM := s.AddCertApp(t, "cert-app")
	dir := t.TempDir()
	kp, cp := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	os.WriteFile(kp, keyPEM, 0o600)
	os.WriteFile(cp, certPEM, 0o644)
	key, cert, err := oauth.ReadKeyPair(kp, cp)
	if err != nil {
		t.Fatal(err)
	}
	f := &oauth.ClientCredentials{TokenURL: s.TokenURL, ClientID: "cert-app", Key: key, Cert: cert}
	tok, err := f.Fetch(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if m := introspect(t, s, tok.Access); m["active"] != true || m["client_id"] != "cert-app" {
		t.Errorf("introspection %v", m)
	}
	// Another key with the same certificate: refused.
	_, other := s.AddCertApp(t, "other")
	_ = other
	otherKey, _ := s.AddCertApp(t, "third")
	os.WriteFile(kp, otherKey, 0o600)
	if _, _, err := oauth.ReadKeyPair(kp, cp); err == nil {
		t.Error("ReadKeyPair accepted a certificate of another key")
	}
}

func TestJWTBearerSubject(t *testing.T) {
	s := start(t)
	sa := s.AddServiceAccount(t, "legate@project.example", func(sub string) bool { return strings.HasSuffix(sub, "@example.com") })
	path := filepath.Join(t.TempDir(), "sa.json")
	os.WriteFile(path, sa, 0o600)
	acct, err := oauth.ReadServiceAccount(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &oauth.JWTBearer{Account: acct, Audience: s.Issuer, Scopes: []string{"https://mail.google.com/"}}
	tok, err := f.Fetch(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if m := introspect(t, s, tok.Access); m["active"] != true || m["username"] != "alice@example.com" {
		t.Errorf("introspection %v, want alice@example.com", m)
	}
	if _, err := f.Fetch(context.Background(), "mallory@evil.example"); !errors.Is(err, oauth.ErrUnavailable) {
		t.Errorf("subject outside the delegation: got %v, want ErrUnavailable", err)
	}
}

// 200 logins for 50 users at once cause one token request per user.
func TestCacheSingleFlight(t *testing.T) {
	s := start(t)
	sa := s.AddServiceAccount(t, "sa@x", func(string) bool { return true })
	path := filepath.Join(t.TempDir(), "sa.json")
	os.WriteFile(path, sa, 0o600)
	acct, err := oauth.ReadServiceAccount(path)
	if err != nil {
		t.Fatal(err)
	}
	c := oauth.NewCache(&oauth.JWTBearer{Account: acct, Audience: s.Issuer}, oauth.CacheOptions{Name: "upstream.imap"})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			if _, err := c.Token(context.Background(), fmt.Sprintf("user%d@example.com", i%50)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range 50 {
		if n := s.Issued("sa@x", fmt.Sprintf("user%d@example.com", i)); n != 1 {
			t.Errorf("user%d: %d token requests, want 1", i, n)
		}
	}
}

func TestCacheRefreshAndOutage(t *testing.T) {
	s := start(t)
	s.SetTokenLifetime(4 * time.Second) // op reports expires_in 3 (whole seconds)
	s.AddApp("app", "secret")
	c := oauth.NewCache(&oauth.ClientCredentials{TokenURL: s.TokenURL, ClientID: "app", Secret: "secret"}, oauth.CacheOptions{Name: "upstream.smtp"})
	ctx := context.Background()
	t1, err := c.Token(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if t2, _ := c.Token(ctx, "bob"); t2 != t1 {
		t.Error("app-only token differs per subject")
	}
	if n := s.Issued("app", "app"); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	// Past the refresh point (a fifth of 3 s before expiry, at 2.4 s): a new token.
	time.Sleep(2600 * time.Millisecond)
	t3, err := c.Token(ctx, "alice")
	if err != nil || t3 == t1 {
		t.Fatalf("after refresh point: err %v, same token %v", err, t3 == t1)
	}
	// Endpoint down: the cached token keeps working until it expires...
	s.SetTokenEndpointDown(true)
	time.Sleep(2600 * time.Millisecond)
	t4, err := c.Token(ctx, "alice")
	if err != nil || t4 != t3 {
		t.Fatalf("endpoint down before expiry: got %v (same %v), want the cached token", err, t4 == t3)
	}
	if c.Err() == nil {
		t.Error("Err() nil while the endpoint is down")
	}
	// ...then the login gets ErrUnavailable.
	time.Sleep(600 * time.Millisecond)
	if _, err := c.Token(ctx, "alice"); !errors.Is(err, oauth.ErrUnavailable) {
		t.Fatalf("endpoint down after expiry: got %v, want ErrUnavailable", err)
	}
	s.SetTokenEndpointDown(false)
	if _, err := c.Token(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if c.Err() != nil {
		t.Errorf("Err() = %v after recovery", c.Err())
	}
}

func TestInitialResponse(t *testing.T) {
	got := string(oauth.InitialResponse(oauth.MechXOAUTH2, "alice@example.com", "tok", "", 0))
	if want := "user=alice@example.com\x01auth=Bearer tok\x01\x01"; got != want {
		t.Errorf("XOAUTH2 %q, want %q", got, want)
	}
	got = string(oauth.InitialResponse(oauth.MechOAUTHBEARER, "alice@example.com", "tok", "imap.example.com", 993))
	if want := "n,a=alice@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01"; got != want {
		t.Errorf("OAUTHBEARER %q, want %q", got, want)
	}
	for _, u := range []string{"", "a,b", "a=b", "a\x01b", "a b", strings.Repeat("a", 400)} {
		if oauth.ValidUser(u) {
			t.Errorf("ValidUser(%q) = true", u)
		}
	}
	if !oauth.ValidUser("alice@example.com") {
		t.Error("ValidUser(alice@example.com) = false")
	}
}
