package daemon

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenersOneLoop (#14.1): every listener, the HTTP ones included,
// is in d.fronts; a drain stops the portal but keeps listen.http answering
// (so /readyz can say "draining"); Close stops them all.
func TestListenersOneLoop(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, filepath.Join(dir, "oidc.secret"), "s3cret\n")
	portal := fmt.Sprintf(`portal:
  external_url: http://127.0.0.1:8080
  oidc: {issuer: http://127.0.0.1:1, client_id: legate, client_secret_file: %s/oidc.secret}
`, dir)
	cfg := strings.Replace(testConfig(dir, "", portal), "listen:\n", "listen:\n  portal: 127.0.0.1:0\n", 1)
	writeFile(t, path, cfg)
	d := startDaemon(t, path)
	var keys []string
	for _, f := range d.fronts {
		keys = append(keys, f.key)
	}
	if got := strings.Join(keys, " "); got != "portal http" {
		t.Fatalf("listeners in start order: got %q, want \"portal http\"", got)
	}
	portalAddr, httpAddr := d.Addr("portal").String(), d.Addr("http").String()

	d.shutdownListeners(context.Background())
	if c, err := net.Dial("tcp", portalAddr); err == nil {
		c.Close()
		t.Errorf("portal still accepts after the drain")
	}
	if code, _ := get(t, d, "/healthz"); code != 200 {
		t.Errorf("listen.http during the drain: got %d, want 200", code)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", httpAddr); err == nil {
		c.Close()
		t.Errorf("listen.http still accepts after Close")
	}
}
