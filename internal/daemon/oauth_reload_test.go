package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/legate-proxy/legate/internal/testenv/oauthserver"
)

// TestReloadKeepsTokenCache: a reload that leaves an oauth2 token source
// unchanged keeps its cached token (no request to the token endpoint); one
// that changes it (scope, secret file contents) starts a new cache, and a
// source no longer in force is dropped.
func TestReloadKeepsTokenCache(t *testing.T) {
	srv := oauthserver.Start(t, oauthserver.Options{})
	srv.AddApp("printer-app", "app-secret")
	dir := t.TempDir()
	secret := filepath.Join(dir, "oauth.secret")
	writeFile(t, secret, "app-secret\n")
	conf := func(client, scope string) string {
		return testConfig(dir, "", fmt.Sprintf(`upstream:
  imap:
    address: 127.0.0.1:1
    tls: none
    auth: oauth2
    oauth2:
      provider: generic
      grant: client_credentials
      token_url: %s
      client_id: %s
      client_secret_file: %s
      scope: %s
`, srv.TokenURL, client, secret, scope))
	}
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, path, conf("printer-app", "imap"))
	d := startDaemon(t, path)
	ctx := context.Background()
	token := func(when string) string {
		t.Helper()
		tok, err := d.rt.Load().ups.IMAP.OAuth.Tokens.Token(ctx, "")
		if err != nil || tok == "" {
			t.Fatalf("%s: token: %q, %v", when, tok, err)
		}
		return tok
	}
	reload := func(content string) {
		t.Helper()
		writeFile(t, path, content)
		if err := d.ReloadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	issued := func(when string, want int) {
		t.Helper()
		if got := srv.Issued("printer-app", "printer-app"); got != want {
			t.Errorf("%s: %d tokens issued, want %d", when, got, want)
		}
	}

	first := token("at start")
	issued("at start", 1)
	reload(conf("printer-app", "imap"))
	if got := token("after a reload that changes nothing"); got != first {
		t.Error("after a reload that changes nothing: another token, want the cached one")
	}
	issued("after a reload that changes nothing", 1)

	reload(conf("printer-app", "imap smtp")) // another scope: another source
	token("after the scope changed")
	issued("after the scope changed", 2)

	reload(conf("printer-app", "imap")) // back: the first cache was dropped
	token("after changing back")
	issued("after changing back", 3)

	writeFile(t, secret, "app-secret") // same secret, other file contents (no newline)
	reload(conf("printer-app", "imap"))
	token("after the secret file changed")
	issued("after the secret file changed", 4)
	if n := len(d.tokens.m); n != 1 {
		t.Errorf("%d token caches held, want 1 (the one in force)", n)
	}
}
