package cli_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
)

// TestFreshCloneCheck runs exactly the README's `legate check --config
// config.example.yaml` in the repository root: it passes from a fresh clone
// (missing secret files are warnings there).
func TestFreshCloneCheck(t *testing.T) {
	cmd := exec.Command(legateBin, "check", "--config", "config.example.yaml")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "config.example.yaml: OK") {
		t.Errorf("legate check --config config.example.yaml in the repository: %v\n%s", err, out)
	}
}

// TestFixturesCheck: the shared fixtures in testdata/ pass check without a
// warning once their secrets are private (mode 0600), as testdata/README.md says.
func TestFixturesCheck(t *testing.T) {
	root := filepath.Join("..", "..", "testdata")
	dir := t.TempDir()
	for _, sub := range []string{"configs", "secrets", filepath.Join("configs", "data")} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	configs, _ := filepath.Glob(filepath.Join(root, "configs", "*.yaml"))
	secrets, _ := filepath.Glob(filepath.Join(root, "secrets", "*.secret"))
	if len(configs) < 2 || len(secrets) < 3 {
		t.Fatalf("testdata: %d configs, %d secrets", len(configs), len(secrets))
	}
	for _, f := range append(configs, secrets...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		os.WriteFile(filepath.Join(dir, rel), b, 0o600)
	}
	for _, f := range configs {
		cfg := filepath.Join(dir, "configs", filepath.Base(f))
		if r := legate(t, "", "check", "--config", cfg); r.code != 0 || r.stderr != "" {
			t.Errorf("check %s: exit %d, %s", filepath.Base(f), r.code, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "directory.ldif")); err != nil {
		t.Errorf("testdata/directory.ldif: %v", err)
	}
}

// TestHelpEverywhere walks every command and command group listed by
// `legate -h`: -h and --help print its usage and exit 0.
func TestHelpEverywhere(t *testing.T) {
	top := legate(t, "", "--help")
	if top.code != 0 {
		t.Fatalf("legate --help: exit %d", top.code)
	}
	var cmds [][]string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z][a-z-]*) `).FindAllStringSubmatch(top.stderr, -1) {
		cmds = append(cmds, []string{m[1]})
	}
	if len(cmds) < 11 {
		t.Fatalf("legate --help lists %d commands:\n%s", len(cmds), top.stderr)
	}
	cmds = append(cmds,
		[]string{"apppass", "create"}, []string{"apppass", "list"}, []string{"apppass", "revoke"},
		[]string{"store", "copy"}, []string{"sessions", "kill"})
	for _, c := range cmds {
		for _, h := range []string{"-h", "--help"} {
			r := legate(t, "", append(append([]string{}, c...), h)...)
			out := r.stdout + r.stderr
			want := "usage: legate " + strings.Join(c, " ")
			if c[0] == "sessions" {
				want = "usage: legate sessions"
			}
			if r.code != 0 || !strings.Contains(out, want) {
				t.Errorf("legate %s %s: exit %d, output %q; want 0 and %q", strings.Join(c, " "), h, r.code, out, want)
			}
		}
	}
	if r := legate(t, "", "help", "apppass"); r.code != 0 || !strings.Contains(r.stderr, "legate apppass create") {
		t.Errorf("legate help apppass: exit %d, %q", r.code, r.stderr)
	}
	if r := legate(t, "", "apppass"); r.code != 2 {
		t.Errorf("legate apppass (no subcommand): exit %d, want 2", r.code)
	}
	if r := legate(t, "", "demo", "-h"); !strings.Contains(r.stderr, "-ldap") || !strings.Contains(r.stderr, "-portal") {
		t.Errorf("demo -h lacks --ldap/--portal: %q", r.stderr)
	}
}

// TestHashPassword: hash-password reads stdin and prints an argon2id hash
// with the documented parameters, which the static directory accepts (and
// only for that password); through explain, the primary password from a
// trusted network is allowed.
func TestHashPassword(t *testing.T) {
	const pw = "correct horse battery staple"
	r := legate(t, pw+"\n", "hash-password")
	hash := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(hash, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash-password: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, pw) {
		t.Error("hash-password printed the password")
	}
	dir, err := directory.NewStatic([]directory.StaticUser{{Name: "alice", PasswordHash: hash}})
	if err != nil {
		t.Fatalf("static directory refuses the hash: %v", err)
	}
	u, err := dir.Lookup(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.CheckPassword(context.Background(), u, pw); err != nil {
		t.Errorf("the hash does not verify its password: %v", err)
	}
	if err := dir.CheckPassword(context.Background(), u, pw+"x"); err == nil {
		t.Error("the hash verifies a wrong password")
	}

	cfg := writeConfig(t, "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "      - name: bob\n",
		"      - name: bob\n        password_hash: \""+hash+"\"\n", 1)), 0o600)
	r = legate(t, pw+"\n", "explain", "--config", cfg, "--user", "bob", "--ip", "10.1.2.3",
		"--protocol", "imap", "--tls", "--password-stdin")
	if r.code != 0 || !strings.Contains(r.stdout, "decision: allow") {
		t.Errorf("explain with the hashed primary password: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	if r := legate(t, "\n", "hash-password"); r.code != 2 {
		t.Errorf("hash-password with an empty password: exit %d, want 2", r.code)
	}
	if r := legate(t, pw, "hash-password", pw); r.code != 2 {
		t.Errorf("hash-password with the password as argument: exit %d, want 2", r.code)
	}
}

// TestCheckWarns: settings that cannot work as meant are warnings on stderr
// with file:line; exit 0.
func TestCheckWarns(t *testing.T) {
	cfg := writeConfig(t, "  allow_plaintext_loopback: true\n")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "listen:\n", "listen:\n  imap: 0.0.0.0:10143\n", 1)), 0o600)
	os.WriteFile(cfg, []byte(strings.Replace(string(must(os.ReadFile(cfg))), "policy:\n",
		"upstream:\n  imap:\n    address: 127.0.0.1:143\n    tls: none\n    master_user: legate\n    master_password_file: imap.secret\npolicy:\n", 1)), 0o600)
	os.WriteFile(filepath.Join(filepath.Dir(cfg), "imap.secret"), []byte("x\n"), 0o600)
	r := legate(t, "", "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stderr, "legate: warning: "+cfg+":2: listen.imap: 0.0.0.0:10143 is not a loopback address") ||
		!strings.Contains(r.stdout, "OK, with 1 warning(s)") {
		t.Errorf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestAdminPathNotSocket: a regular file at listen.admin (a mistyped path)
// is refused by check and by serve, and survives.
func TestAdminPathNotSocket(t *testing.T) {
	cfg := writeConfig(t, "")
	sock := filepath.Join(filepath.Dir(cfg), "admin.sock")
	if err := os.WriteFile(sock, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := legate(t, "", "check", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "listen.admin: "+sock+" is a regular file, not a unix socket") {
		t.Errorf("check: exit %d, %q", r.code, r.stderr)
	}
	done := make(chan result, 1)
	go func() { done <- legate(t, "", "serve", "--config", cfg) }()
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not refuse a regular file at listen.admin")
	}
	if r.code != 1 || !strings.Contains(r.stderr, "not a unix socket") {
		t.Errorf("serve: exit %d, %q", r.code, r.stderr)
	}
	if r := legate(t, "", "apppass", "list", "--config", cfg, "--user", "alice"); r.code != 1 || !strings.Contains(r.stderr, "not a unix socket") {
		t.Errorf("apppass list: exit %d, %q", r.code, r.stderr)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "precious\n" {
		t.Errorf("the file at listen.admin changed: %q %v", b, err)
	}
}

// TestIdleAdminClientShutdown: an admin client that connects and sends
// nothing does not hold serve's shutdown past shutdown_grace + 2 s.
func TestIdleAdminClientShutdown(t *testing.T) {
	const grace = time.Second
	cfg := writeConfig(t, "limits:\n  shutdown_grace: 1s\n")
	sock := filepath.Join(filepath.Dir(cfg), "admin.sock")
	cmd := exec.Command(legateBin, "serve", "--config", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var conn net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("unix", sock)
		if err == nil {
			conn = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin socket never answered: %v", err)
		}
	}
	defer conn.Close()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve exit: %v", err)
		}
		t.Logf("serve stopped %v after SIGTERM with an idle admin client", time.Since(start).Round(time.Millisecond))
	case <-time.After(grace + 2*time.Second):
		t.Fatalf("serve still running %v after SIGTERM with an idle admin client", grace+2*time.Second)
	}
}

// TestServeLogsWarnings: what check warns about is also in serve's log.
func TestServeLogsWarnings(t *testing.T) {
	cfg := writeConfig(t, "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "10.0.0.0/8", "0.0.0.0/0", 1)), 0o600)
	if r := legate(t, "", "check", "--config", cfg); r.code != 0 || !strings.Contains(r.stderr, "0.0.0.0/0 trusts every address") {
		t.Errorf("check: exit %d, %q", r.code, r.stderr)
	}
	cmd := exec.Command(legateBin, "serve", "--config", cfg)
	var logs strings.Builder
	cmd.Stderr = &syncWriter{b: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sock := filepath.Join(filepath.Dir(cfg), "admin.sock")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if l := logs.String(); !strings.Contains(l, "configuration warning") || !strings.Contains(l, "0.0.0.0/0 trusts every address") {
		t.Errorf("serve log lacks the warning:\n%s", l)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestMissingFilesFileLine: a certificate (or secret) file not deployed yet
// is a warning in check, and serve refuses to start naming file:line and
// the key.
func TestMissingFilesFileLine(t *testing.T) {
	cfg := writeConfig(t, "tls:\n  cert_file: tls.crt\n  key_file: tls.key\n")
	data := string(must(os.ReadFile(cfg)))
	line := 1 + strings.Count(data[:strings.Index(data, "cert_file")], "\n")
	want := fmt.Sprintf("%s:%d: tls.cert_file: cannot read %s", cfg, line, filepath.Join(filepath.Dir(cfg), "tls.crt"))
	r := legate(t, "", "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stderr, "warning: "+want) {
		t.Errorf("check: exit %d, %q; want 0 and a warning %q", r.code, r.stderr, want)
	}
	r = legate(t, "", "serve", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "panic") {
		t.Errorf("serve: exit %d, %q; want 1 and %q", r.code, r.stderr, want)
	}
}
