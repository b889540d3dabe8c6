package systemtest

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
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

// buildLegate builds cmd/legate with -race into a temp dir.
func buildLegate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "legate")
	out, err := exec.Command("go", "build", "-race", "-o", bin, "github.com/legate-proxy/legate/cmd/legate").CombinedOutput()
	if err != nil {
		t.Fatalf("build legate: %v\n%s", err, out)
	}
	return bin
}

// server is a running `legate serve` whose stderr is collected.
type server struct {
	cmd     *exec.Cmd
	logs    SyncBuffer
	started chan struct{}
	done    chan struct{}
}

func startServe(t *testing.T, bin, cfg string) *server {
	t.Helper()
	s := &server{cmd: exec.Command(bin, "serve", "--config", cfg), started: make(chan struct{}), done: make(chan struct{})}
	pr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			s.logs.Write([]byte(sc.Text() + "\n"))
			if !once && strings.Contains(sc.Text(), "legate started") {
				once = true
				close(s.started)
			}
		}
		s.cmd.Wait()
	}()
	select {
	case <-s.started:
	case <-s.done:
		t.Fatalf("serve exited during start:\n%s", s.logs.String())
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("serve did not start:\n%s", s.logs.String())
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

var secretLine = regexp.MustCompile(`^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$`)

// TestServeCrashSafety creates app passwords through the CLI while
// `legate serve` runs, kills the server with SIGKILL at a random moment,
// restarts it (the stale admin socket is removed) and checks that every
// password the CLI acknowledged still verifies.
func TestServeCrashSafety(t *testing.T) {
	bin := buildLegate(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "legate.yaml")
	sock := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`listen:
  admin: %s
storage:
  path: %s/legate.db
directory:
  type: static
  static:
    users:
      - name: alice
        addresses: [alice@example.com]
policy:
  max_app_passwords_per_user: 10000
`, sock, dir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (string, string, error) {
		cmd := exec.Command(bin, append(args, "--config", cfgPath)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}

	var acked []string
	const cycles = 2
	for cycle := 1; cycle <= cycles; cycle++ {
		srv := startServe(t, bin, cfgPath)
		if cycle > 1 && !strings.Contains(srv.logs.String(), "removed stale admin socket") {
			t.Errorf("cycle %d: restart after kill -9 did not log \"removed stale admin socket\":\n%s", cycle, srv.logs.String())
		}
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					out, _, err := run("", "apppass", "create", "--user", "alice", "--name", fmt.Sprintf("c%d-w%d-%d", cycle, w, i))
					lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
					if err == nil && secretLine.MatchString(lines[len(lines)-1]) {
						mu.Lock()
						acked = append(acked, lines[len(lines)-1])
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(1500+rand.IntN(2000)) * time.Millisecond)
		if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-srv.done
		close(stop)
		wg.Wait()
		if _, err := os.Stat(sock); err != nil {
			t.Logf("cycle %d: no stale socket left (%v)", cycle, err)
		}
	}
	srv := startServe(t, bin, cfgPath)
	if !strings.Contains(srv.logs.String(), "removed stale admin socket") {
		t.Errorf("final restart did not log \"removed stale admin socket\":\n%s", srv.logs.String())
	}
	if len(acked) < 5 {
		t.Fatalf("only %d passwords acknowledged before the kills, want at least 5", len(acked))
	}
	var lost int
	for _, pw := range acked {
		out, errOut, err := run(pw+"\n", "explain", "--user", "alice", "--ip", "192.0.2.7", "--protocol", "imap", "--tls", "--password-stdin")
		if err != nil || !strings.Contains(out, "decision: allow") {
			lost++
			t.Errorf("acknowledged password #%d does not verify after kill -9: %v\n%s%s", lost, err, out, errOut)
		}
	}
	t.Logf("%d acknowledged passwords over %d kill -9 cycles, %d lost", len(acked), cycles, lost)
}
