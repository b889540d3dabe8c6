package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/internal/testenv"
)

// storeConfig writes a config whose storage section is storage (indented
// two spaces), sharing the HMAC key file key.
func storeConfig(t *testing.T, key, storage string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`storage:
  key_file: %s
%s
directory:
  type: static
  static:
    users:
      - name: alice
      - name: bob
`, key, storage)
	path := filepath.Join(dir, "legate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bolt → etcd → bolt with the real binary; the copies answer logins.
func TestStoreCopy(t *testing.T) {
	e := testenv.StartEtcd(t, 1)
	key := filepath.Join(t.TempDir(), "hmac.key")
	boltA := storeConfig(t, key, "  path: "+filepath.Join(t.TempDir(), "a.db"))
	etcdB := storeConfig(t, key, fmt.Sprintf("  backend: etcd\n  etcd:\n    endpoints: [%s]\n    prefix: /cli/", e.Endpoints()[0]))
	boltC := storeConfig(t, key, "  path: "+filepath.Join(t.TempDir(), "c.db"))

	var secrets []string
	for _, u := range []string{"alice", "bob"} {
		r := legate(t, "", "apppass", "create", "--config", boltA, "--user", u, "--name", "Laptop")
		if r.code != 0 {
			t.Fatalf("create: exit %d, %s", r.code, r.stderr)
		}
		secrets = append(secrets, lastLine(r.stdout))
	}
	for _, step := range []struct{ from, to, want string }{
		{boltA, etcdB, "copied 2 app passwords (2 new)"},
		{boltA, etcdB, "copied 2 app passwords (0 new)"},
		{etcdB, boltC, "copied 2 app passwords (2 new)"},
	} {
		r := legate(t, "", "store", "copy", "--from", step.from, "--to", step.to)
		if r.code != 0 || !strings.Contains(r.stdout, step.want) {
			t.Fatalf("store copy: exit %d, got %q %s, want %q", r.code, r.stdout, r.stderr, step.want)
		}
	}
	for _, cfg := range []string{etcdB, boltC} {
		for i, u := range []string{"alice", "bob"} {
			r := legate(t, secrets[i]+"\n", "explain", "--config", cfg, "--user", u, "--ip", "192.0.2.7",
				"--protocol", "imap", "--tls", "--password-stdin")
			if r.code != 0 || !strings.Contains(r.stdout, "decision: allow (rule app_password)") {
				t.Errorf("explain %s on %s: exit %d, out:\n%s%s", u, filepath.Base(filepath.Dir(cfg)), r.code, r.stdout, r.stderr)
			}
		}
	}
	if r := legate(t, "", "store", "copy", "--from", boltA); r.code != 2 {
		t.Errorf("store copy without --to: got exit %d, want 2", r.code)
	}
}
