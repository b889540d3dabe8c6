package bolt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
)

const crashEnv = "LEGATE_STORE_CRASH_DIR"

// TestCrashHelper is the child of TestCrashAcknowledgedSurvive: it creates
// app passwords in a loop and prints "ok <user> <secret>" after each Create
// returns, until it is killed. It also queues audit records and flushes them
// now and then, so a kill can land in the middle of either kind of write.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashAcknowledgedSurvive")
	}
	ctx := context.Background()
	b, err := Open(ctx, Options{Path: filepath.Join(dir, "legate.db"), OpenTimeout: 10 * time.Second, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	run := os.Getenv("LEGATE_STORE_CRASH_RUN")
	for i := 0; ; i++ {
		user := fmt.Sprintf("crash%d", i%25)
		p, secret, err := b.Create(ctx, store.CreateRequest{User: user, Name: fmt.Sprintf("r%s-%d", run, i), Limit: 100000})
		if err != nil {
			fmt.Fprintln(os.Stderr, "create:", err)
			os.Exit(4)
		}
		fmt.Printf("ok %s %s\n", user, secret)
		b.RecordUse(p.ID, store.LastUse{Protocol: "imap"})
		b.Audit(store.AuditRecord{Action: "create", Via: "cli", User: user, Outcome: "ok", AppPasswordID: p.ID})
		if i%7 == 0 {
			if err := b.Flush(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "flush:", err)
				os.Exit(5)
			}
		}
	}
}

// TestCrashAcknowledgedSurvive kills a writer with SIGKILL at a random moment
// and checks that every password it acknowledged verifies after reopening,
// that the index is consistent and the audit chain intact. Three rounds on
// the same database, so later rounds start from a crashed one.
func TestCrashAcknowledgedSurvive(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	var acked []Cred
	for round := range 3 {
		got := runCrashChild(t, dir, round)
		if len(got) == 0 {
			t.Fatalf("round %d: child acknowledged nothing", round)
		}
		acked = append(acked, got...)

		b, err := Open(context.Background(), Options{Path: filepath.Join(dir, "legate.db"), OpenTimeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		for _, c := range acked {
			if _, err := b.Verify(context.Background(), c.User, c.Secret); err != nil {
				t.Errorf("round %d: acknowledged password of %s lost: %v", round, c.User, err)
			}
		}
		if err := b.CheckIndex(); err != nil {
			t.Errorf("round %d: index: %v", round, err)
		}
		res, err := b.VerifyAudit(context.Background())
		if err != nil || !res.OK {
			t.Errorf("round %d: audit chain: got %+v, %v; want OK", round, res, err)
		}
		t.Logf("round %d: %d acknowledged so far all verify; %d audit records", round, len(acked), res.Records)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// runCrashChild starts the helper, kills it 100–600 ms after its first
// acknowledgement and returns the complete "ok" lines it printed.
func runCrashChild(t *testing.T, dir string, round int) []Cred {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir, fmt.Sprintf("LEGATE_STORE_CRASH_RUN=%d", round))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		creds []Cred
		first = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		r := bufio.NewReader(out)
		once := sync.OnceFunc(func() { close(first) })
		defer once()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("reading child: %v", err)
				}
				return // a line cut short by the kill was never acknowledged
			}
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == "ok" {
				mu.Lock()
				creds = append(creds, Cred{User: f[1], Secret: f[2]})
				mu.Unlock()
				once()
			}
		}
	}()
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child printed nothing in 30s; stderr: %s", stderr.String())
	}
	delay := 100*time.Millisecond + rand.N(500*time.Millisecond)
	time.Sleep(delay)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-done
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("child: got %v, want killed by signal; stderr: %s", err, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("round %d: killed after %v with %d acknowledged", round, delay, len(creds))
	return creds
}
