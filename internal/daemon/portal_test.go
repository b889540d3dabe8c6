package daemon

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestReloadPortal (#14.5): a reload reaches the portal: its client
// settings (here through the Thunderbird autoconfig answer) change without
// a restart.
func TestReloadPortal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, filepath.Join(dir, "oidc.secret"), "s3cret\n")
	portalCfg := func(host string) string {
		return fmt.Sprintf(`portal:
  external_url: http://127.0.0.1:8080
  oidc: {issuer: http://127.0.0.1:1, client_id: legate, client_secret_file: %s/oidc.secret}
  client_settings:
    imap: {host: %s, port: 993, security: tls}
`, dir, host)
	}
	cfg := strings.Replace(testConfig(dir, "", portalCfg("old.example.com")), "listen:\n", "listen:\n  portal: 127.0.0.1:0\n", 1)
	writeFile(t, path, cfg)
	d := startDaemon(t, path)
	var addr string
	for _, f := range d.fronts {
		if f.key == "portal" {
			addr = f.ln.Addr().String()
		}
	}
	if addr == "" {
		t.Fatal("no portal listener")
	}
	host := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/mail/config-v1.1.xml")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := host(); !strings.Contains(got, "<hostname>old.example.com</hostname>") {
		t.Fatalf("autoconfig before reload: got %s, want old.example.com", got)
	}
	writeFile(t, path, strings.Replace(cfg, "old.example.com", "new.example.com", 1))
	if err := d.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	if got := host(); !strings.Contains(got, "<hostname>new.example.com</hostname>") {
		t.Errorf("autoconfig after reload: got %s, want new.example.com", got)
	}
}
