package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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
)

// The tests in this file run the built `legate` binary.

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// legateBinary builds cmd/legate once per test run.
func legateBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "legate-daemon-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "legate")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, "github.com/legate-proxy/legate/cmd/legate").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// server is a running `legate serve`.
type server struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	logs    strings.Builder
	started chan struct{}
	exited  chan struct{}
}

func (s *server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// serve starts `legate serve --config path` and waits for "legate started".
func serve(t *testing.T, path string) *server {
	t.Helper()
	s := &server{cmd: exec.Command(legateBinary(t), "serve", "--config", path),
		started: make(chan struct{}), exited: make(chan struct{})}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			s.mu.Lock()
			s.logs.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if !once && strings.Contains(sc.Text(), "legate started") {
				once = true
				close(s.started)
			}
		}
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		s.cmd.Wait()
	})
	select {
	case <-s.started:
	case <-s.exited:
		t.Fatalf("serve exited before starting:\n%s", s.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start:\n%s", s.Logs())
	}
	return s
}

// run runs a legate CLI command and returns its stdout; a non-zero exit
// fails the test.
func run(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(legateBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("legate %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TestDrainOnSIGTERM: SIGTERM ends `legate serve` with exit 0 within
// limits.shutdown_grace + 1s even with a client connected, closes that
// client and removes the admin socket.
func TestDrainOnSIGTERM(t *testing.T) {
	up := fakeUpstream(t, nil)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "master.secret"), masterSecret)
	path := filepath.Join(dir, "legate.yaml")
	const grace = 2 * time.Second
	writeFile(t, path, strings.Replace(testConfig(dir, "  allow_plaintext_loopback: true\n",
		"upstream:\n"+upstreamConfig(dir, "imap", up.Addr().String(), "none", "")+
			fmt.Sprintf("limits:\n  shutdown_grace: %s\n", grace)),
		"listen:\n", "listen:\n  imap: 127.0.0.1:0\n  admin: "+dir+"/admin.sock\n", 1))
	s := serve(t, path)
	m := regexp.MustCompile(`imap=(127\.0\.0\.1:\d+)`).FindStringSubmatch(s.Logs())
	if m == nil {
		t.Fatalf("no imap address in the start line:\n%s", s.Logs())
	}
	client, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	greeting, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("IMAP greeting: got %q, %v", greeting, err)
	}
	clientClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, client)
		close(clientClosed)
	}()

	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { <-s.exited; done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: got %v, want status 0", err)
		}
	case <-time.After(grace + time.Second):
		t.Fatalf("still running %v after SIGTERM (shutdown_grace %v):\n%s", grace+time.Second, grace, s.Logs())
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start))
	select {
	case <-clientClosed:
	case <-time.After(time.Second):
		t.Error("the connected client was not closed by the drain")
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.sock")); !os.IsNotExist(err) {
		t.Errorf("admin socket after stop: got %v, want it removed", err)
	}
	if l := s.Logs(); !strings.Contains(l, "draining") || !strings.Contains(l, "stopped") {
		t.Errorf("logs lack the draining and stopped lines:\n%s", l)
	}
}

// TestReloadOnSIGHUP: SIGHUP re-reads the file; a broken one is refused
// with file:line in the log, a good one changes the decision.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	good := strings.Replace(testConfig(dir, "", ""), "listen:\n", "listen:\n  admin: "+dir+"/admin.sock\n", 1)
	writeFile(t, path, good)
	s := serve(t, path)

	var created struct {
		Password string `json:"password"`
	}
	out := run(t, "", "apppass", "create", "--config", path, "--user", "alice", "--name", "laptop", "--json")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Password == "" {
		t.Fatalf("apppass create: %q, %v", out, err)
	}
	explain := func() string {
		var e struct{ Outcome, Rule string }
		out := run(t, created.Password+"\n", "explain", "--config", path, "--user", "alice", "--ip", "203.0.113.5",
			"--protocol", "imap", "--tls", "--password-stdin", "--json")
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("explain: %q, %v", out, err)
		}
		return e.Outcome + "/" + e.Rule
	}
	if got := explain(); got != "allow/app_password" {
		t.Fatalf("explain before reload: got %s, want allow/app_password", got)
	}

	broken := good + "  max_app_passwords_per_user: many\n"
	writeFile(t, path, broken)
	s.cmd.Process.Signal(syscall.SIGHUP)
	want := fmt.Sprintf("legate.yaml:%d:", strings.Count(broken, "\n"))
	if !waitFor(10*time.Second, func() bool {
		l := s.Logs()
		return strings.Contains(l, "reload refused") && strings.Contains(l, "trigger=SIGHUP") && strings.Contains(l, want)
	}) {
		t.Fatalf("no refused SIGHUP reload naming %s in the logs:\n%s", want, s.Logs())
	}
	// (The CLI reads the file too, so it cannot run while the file is
	// broken; TestReloadFile checks that the old policy stays in force.)

	writeFile(t, path, good+"  block_legacy_auth: true\n")
	s.cmd.Process.Signal(syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(s.Logs(), "configuration reloaded") }) {
		t.Fatalf("no reload after SIGHUP:\n%s", s.Logs())
	}
	if got := explain(); got != "refused/legacy_auth_blocked" {
		t.Errorf("explain after reload: got %s, want refused/legacy_auth_blocked", got)
	}
}
