package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var legateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "legate-cli-test-")
	if err != nil {
		panic(err)
	}
	legateBin = filepath.Join(dir, "legate")
	out, err := exec.Command("go", "build", "-race", "-o", legateBin, "github.com/legate-proxy/legate/cmd/legate").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build legate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// writeConfig writes a minimal config with a static directory into a temp dir.
func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen:
  admin: %s/admin.sock
storage:
  path: %s/legate.db
directory:
  type: static
  static:
    users:
      - name: alice
        addresses: [alice@example.com]
        groups: [staff]
      - name: root
        addresses: [root@example.com]
      - name: bob
policy:
  admins: [root]
  trusted_networks: [10.0.0.0/8, "fd00::/8"]
  max_app_passwords_per_user: 3
%s`, dir, dir, extra)
	path := filepath.Join(dir, "legate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	code           int
	stdout, stderr string
}

func legate(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(legateBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

var secretRE = regexp.MustCompile(`^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$`)

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// exercise runs the app-password lifecycle through the CLI; it is the same
// whether a server answers on the admin socket or not.
func exercise(t *testing.T, cfg string) {
	r := legate(t, "", "apppass", "create", "--config", cfg, "--user", "alice", "--name", "Laptop", "--scope", "imap,smtp")
	if r.code != 0 {
		t.Fatalf("create: exit %d, stderr %s", r.code, r.stderr)
	}
	secret := lastLine(r.stdout)
	if !secretRE.MatchString(secret) {
		t.Fatalf("last line of create = %q, want XXXX-XXXX-XXXX-XXXX", secret)
	}

	r = legate(t, "", "apppass", "list", "--config", cfg, "--user", "alice", "--json")
	var list []struct {
		ID, Name, Status string
		Scope            []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 {
		t.Fatalf("list --json: %v, %q", err, r.stdout)
	}
	if list[0].Name != "Laptop" || list[0].Status != "active" || strings.Join(list[0].Scope, ",") != "imap,smtp" {
		t.Errorf("listed %+v, want Laptop active imap,smtp", list[0])
	}
	if strings.Contains(r.stdout, secret) || strings.Contains(r.stdout, strings.ReplaceAll(strings.ToLower(secret), "-", "")) {
		t.Error("list output contains the secret")
	}
	if strings.Contains(r.stdout, `"hash`) {
		t.Errorf("list --json hands out the stored keyed hash: %s", r.stdout)
	}

	// explain with the password on stdin, typed sloppily: lower case, spaces.
	sloppy := strings.ToLower(strings.ReplaceAll(secret, "-", " "))
	r = legate(t, sloppy+"\n", "explain", "--config", cfg, "--user", "alice", "--ip", "192.0.2.7",
		"--protocol", "imap", "--tls", "--password-stdin")
	if r.code != 0 || !strings.Contains(r.stdout, "decision: allow (rule app_password)") {
		t.Errorf("explain allowed: exit %d, out:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "upstream login: upstream.imap: ") {
		t.Errorf("explain does not say which upstream login would be used:\n%s", r.stdout)
	}
	r = legate(t, secret+"\n", "explain", "--config", cfg, "--user", "alice", "--ip", "192.0.2.7",
		"--protocol", "ldap", "--tls", "--password-stdin")
	if !strings.Contains(r.stdout, "decision: refused (rule outside_scope)") {
		t.Errorf("explain out of scope: got\n%s", r.stdout)
	}
	r = legate(t, "", "explain", "--config", cfg, "--user", "alice", "--ip", "192.0.2.7", "--protocol", "imap")
	if !strings.Contains(r.stdout, "decision: tls_required") {
		t.Errorf("explain plaintext: got\n%s", r.stdout)
	}

	// Admins are refused at creation; the limit names itself.
	r = legate(t, "", "apppass", "create", "--config", cfg, "--user", "root", "--name", "x")
	if r.code != 1 || !strings.Contains(r.stderr, "administrators cannot have app passwords") {
		t.Errorf("admin create: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, n := range []string{"Phone", "Printer"} {
		if r := legate(t, "", "apppass", "create", "--config", cfg, "--user", "alice", "--name", n); r.code != 0 {
			t.Fatalf("create %s: %s", n, r.stderr)
		}
	}
	r = legate(t, "", "apppass", "create", "--config", cfg, "--user", "alice", "--name", "Fourth")
	if r.code != 1 || !strings.Contains(r.stderr, "3") || !strings.Contains(r.stderr, "revoke one first") {
		t.Errorf("over limit: exit %d, stderr %q", r.code, r.stderr)
	}

	r = legate(t, "", "apppass", "revoke", "--config", cfg, "--user", "alice", "--name", "Laptop")
	if r.code != 0 || !strings.Contains(r.stdout, "1 app password(s) revoked") {
		t.Errorf("revoke: exit %d, out %q %q", r.code, r.stdout, r.stderr)
	}
	r = legate(t, secret+"\n", "explain", "--config", cfg, "--user", "alice", "--ip", "192.0.2.7",
		"--protocol", "imap", "--tls", "--password-stdin")
	if !strings.Contains(r.stdout, "decision: bad_credentials") {
		t.Errorf("explain after revoke: got\n%s", r.stdout)
	}

	r = legate(t, "", "audit", "--config", cfg, "--user", "alice", "--json")
	var recs []struct{ Action, Outcome string }
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatalf("audit --json: %v %q", err, r.stdout)
	}
	var creates, revokes int
	for _, rec := range recs {
		switch rec.Action {
		case "create":
			creates++
		case "revoke":
			revokes++
		}
	}
	if creates != 3 || revokes != 1 {
		t.Errorf("audit: %d creates, %d revokes; want 3, 1 (records %+v)", creates, revokes, recs)
	}
	if r := legate(t, "", "audit", "--config", cfg, "--verify"); r.code != 0 || !strings.Contains(r.stdout, "audit chain OK") {
		t.Errorf("audit --verify: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// No secret anywhere in what the CLI printed besides create.
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Error("audit output contains the secret")
	}

	// One canonical name (issue #13.5): alice's address names alice in
	// every command, so list and revoke --all under that spelling see what
	// create under it made.
	r = legate(t, "", "apppass", "revoke", "--config", cfg, "--user", "alice@example.com", "--name", "Printer")
	if r.code != 0 || !strings.Contains(r.stdout, "1 app password(s) revoked") {
		t.Errorf("revoke --user alice@example.com: exit %d, out %q %q", r.code, r.stdout, r.stderr)
	}
	if r := legate(t, "", "apppass", "create", "--config", cfg, "--user", "Alice@Example.com", "--name", "Tablet"); r.code != 0 {
		t.Fatalf("create --user Alice@Example.com: %s", r.stderr)
	}
	r = legate(t, "", "apppass", "list", "--config", cfg, "--user", "alice@example.com", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Errorf("list --user alice@example.com: %v, %q; want Phone and Tablet", err, r.stdout)
	}
	r = legate(t, "", "apppass", "revoke", "--config", cfg, "--user", "ALICE@example.com", "--all")
	if r.code != 0 || !strings.Contains(r.stdout, "2 app password(s) revoked") {
		t.Errorf("revoke --all --user ALICE@example.com: exit %d, out %q %q", r.code, r.stdout, r.stderr)
	}
	r = legate(t, "", "apppass", "create", "--config", cfg, "--user", "uid=alice,ou=people,dc=example,dc=com", "--name", "x")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown user") {
		t.Errorf("create for a DN-shaped name: exit %d, stderr %q; want unknown user", r.code, r.stderr)
	}
}

func TestCLIWithoutServer(t *testing.T) {
	cfg := writeConfig(t, "")
	exercise(t, cfg)
	r := legate(t, "", "sessions", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "no legate server is running") {
		t.Errorf("sessions without server: exit %d, %q", r.code, r.stderr)
	}
}

func TestCLIWithServer(t *testing.T) {
	cfg := writeConfig(t, "")
	cmd := exec.Command(legateBin, "serve", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 1)
	started := make(chan struct{})
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "legate started") {
				once = true
				close(started)
			}
		}
		logs <- all.String()
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve did not start; logs:\n%s", <-logs)
	}
	sock := filepath.Join(filepath.Dir(cfg), "admin.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode: %v %v, want 0600", fi.Mode(), err)
	}
	exercise(t, cfg)
	if r := legate(t, "", "apppass", "create", "--config", cfg, "--user", "alice", "--name", "AdminView"); r.code != 0 {
		t.Fatalf("apppass create: exit %d %s", r.code, r.stderr)
	}
	if raw := adminRaw(t, sock, `{"op":"apppass.list","args":{"user":"alice"}}`); !strings.Contains(raw, `"user":"alice"`) || strings.Contains(raw, `"hash`) {
		t.Errorf("admin socket apppass.list: got %s, want the app password without its hash", raw)
	}
	r := legate(t, "", "sessions", "--config", cfg, "--json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("sessions via server: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve exit after SIGTERM: %v", err)
	}
	l := <-logs
	if !strings.Contains(l, "stopped") {
		t.Errorf("serve logs lack the stop line:\n%s", l)
	}
	if !regexp.MustCompile(`msg="store: audit head" seq=[0-9]+ hash=[0-9a-f]{64}`).MatchString(l) {
		t.Errorf("serve logs lack the audit head of a flush:\n%s", l)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind after stop: %v", err)
	}
}

func TestUsageAndCheck(t *testing.T) {
	if r := legate(t, ""); r.code != 2 {
		t.Errorf("no args: exit %d, want 2", r.code)
	}
	if r := legate(t, "", "frobnicate"); r.code != 2 {
		t.Errorf("unknown command: exit %d, want 2", r.code)
	}
	if r := legate(t, "", "apppass", "create", "--bogus"); r.code != 2 {
		t.Errorf("bad flag: exit %d, want 2", r.code)
	}
	if r := legate(t, "", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "legate ") {
		t.Errorf("version: %d %q", r.code, r.stdout)
	}
	good := writeConfig(t, "")
	if r := legate(t, "", "check", "--config", good); r.code != 0 {
		t.Errorf("check good config: exit %d, %s", r.code, r.stderr)
	}
	bad := writeConfig(t, "  trusted_networkz: []\n")
	data, _ := os.ReadFile(bad)
	line := 1 + strings.Count(string(data[:strings.Index(string(data), "trusted_networkz")]), "\n")
	want := fmt.Sprintf("legate.yaml:%d:", line)
	r := legate(t, "", "check", "--config", bad)
	if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "trusted_networkz") {
		t.Errorf("check bad config: exit %d, stderr %q; want exit 1 naming %s and the key", r.code, r.stderr, want)
	}
	// config.example.yaml from a fresh clone: no data/ yet. The secret files
	// and the socket directory that do not exist are warnings (exit 0);
	// once they exist, no warning; a world-readable secret is an error.
	src, err := os.ReadFile(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	example := filepath.Join(dir, "config.example.yaml")
	os.WriteFile(example, src, 0o600)
	r = legate(t, "", "check", "--config", example)
	if r.code != 0 || !strings.Contains(r.stderr, "warning: "+example+":") || !strings.Contains(r.stderr, "imap-master.secret") ||
		!strings.Contains(r.stdout, "OK, with 4 warning(s)") {
		t.Errorf("check example without secret files: exit %d, %s%s; want 0 and a warning naming the missing file", r.code, r.stdout, r.stderr)
	}
	os.Mkdir(filepath.Join(dir, "data"), 0o700)
	for _, f := range []string{"imap-master.secret", "smtp-master.secret", "ldap.secret"} {
		os.WriteFile(filepath.Join(dir, "data", f), []byte("not-a-real-secret\n"), 0o600)
	}
	if r := legate(t, "", "check", "--config", example); r.code != 0 || r.stderr != "" {
		t.Errorf("check config.example.yaml: exit %d, %s", r.code, r.stderr)
	}
	os.Chmod(filepath.Join(dir, "data", "ldap.secret"), 0o644)
	if r := legate(t, "", "check", "--config", example); r.code != 1 || !strings.Contains(r.stderr, "upstream.ldap.bind_password_file: secret file is world-readable") {
		t.Errorf("check with a world-readable secret: exit %d, %s", r.code, r.stderr)
	}
}

var _ = io.Discard
