package daemon

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/internal/testenv"
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

// TestPortalBehindProxy (#16.2): with tls.* set, the portal serves HTTPS;
// with portal.trusted_proxies, an https external URL and a loopback
// listen.portal it serves plain HTTP behind the proxy instead.
func TestPortalBehindProxy(t *testing.T) {
	certs := testenv.NewCerts(t)
	for _, tc := range []struct {
		name, extra string
		plain       bool
	}{
		{"tls", "", false},
		{"behind a proxy", "  trusted_proxies: [127.0.0.1/32]\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "legate.yaml")
			writeFile(t, filepath.Join(dir, "oidc.secret"), "s3cret\n")
			cfg := strings.Replace(testConfig(dir, "", fmt.Sprintf(`tls: {cert_file: %s, key_file: %s}
portal:
  external_url: https://legate.example.com
  oidc: {issuer: https://login.example.com, client_id: legate, client_secret_file: %s/oidc.secret}
  client_settings: {imap: {host: mail.example.com, port: 993, security: tls}}
%s`, certs.CertFile, certs.KeyFile, dir, tc.extra)), "listen:\n", "listen:\n  portal: 127.0.0.1:0\n", 1)
			writeFile(t, path, cfg)
			d := startDaemon(t, path)
			var addr string
			for _, f := range d.fronts {
				if f.key == "portal" {
					addr = f.ln.Addr().String()
				}
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientTLS.Clone()}}
			scheme := "https://"
			if tc.plain {
				scheme = "http://"
			}
			resp, err := client.Get(scheme + addr + "/mail/config-v1.1.xml")
			if err != nil {
				t.Fatalf("GET %s: %v", scheme, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: got %d, want 200", scheme, resp.StatusCode)
			}
			if hsts := resp.Header.Get("Strict-Transport-Security"); hsts == "" {
				t.Error("no HSTS header (the external URL is https)")
			}
		})
	}
}
