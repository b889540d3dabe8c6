package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runExit runs the built binary and returns its exit code and stderr.
func runExit(t *testing.T, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(legateBinary(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("legate %s still running after %v:\n%s", strings.Join(args, " "), timeout, stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatal(err)
	return -1, ""
}

// TestServeStorageErrors (issue 17.1): a storage error at start-up ends
// `legate serve` with exit 1 and the documented message
// (docs/troubleshooting.md), never a panic; `legate check` reports the key
// file's mode without taking the lock.
func TestServeStorageErrors(t *testing.T) {
	t.Run("locked database", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "legate.yaml")
		writeFile(t, path, testConfig(dir, "", ""))
		serve(t, path) // holds the database
		code, stderr := runExit(t, 30*time.Second, "serve", "--config", path)
		want := "store: database " + filepath.Join(dir, "legate.db") + " is locked by another legate process (pid "
		if code != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "panic") {
			t.Errorf("second serve: exit %d, stderr:\n%s\nwant exit 1 with %q and no panic", code, stderr, want)
		}
		// check does not take the lock: it passes while serve runs.
		if code, stderr := runExit(t, 30*time.Second, "check", "--config", path); code != 0 {
			t.Errorf("check while serve runs: exit %d:\n%s", code, stderr)
		}
	})
	t.Run("key file mode 0644", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "legate.yaml")
		writeFile(t, path, testConfig(dir, "", ""))
		key := filepath.Join(dir, "hmac.key")
		if err := os.WriteFile(key, make([]byte, 32), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		want := "store: key file " + key + " has mode 0644, want 0600 or stricter (chmod 600 " + key + ")"
		for _, cmd := range []string{"serve", "check"} {
			code, stderr := runExit(t, 30*time.Second, cmd, "--config", path)
			if code != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "panic") {
				t.Errorf("%s: exit %d, stderr:\n%s\nwant exit 1 with %q and no panic", cmd, code, stderr, want)
			}
		}
	})
	t.Run("database directory is a file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "legate.yaml")
		writeFile(t, path, testConfig(filepath.Join(dir, "nope"), "", ""))
		writeFile(t, filepath.Join(dir, "nope"), "not a directory")
		for _, cmd := range []string{"serve", "check"} {
			code, stderr := runExit(t, 30*time.Second, cmd, "--config", path)
			if code != 1 || strings.Contains(stderr, "panic") || !strings.Contains(stderr, "nope") {
				t.Errorf("%s: exit %d, stderr:\n%s\nwant exit 1 naming the directory, no panic", cmd, code, stderr)
			}
		}
	})
	t.Run("database directory created", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "legate.yaml")
		writeFile(t, path, testConfig(filepath.Join(dir, "data"), "", ""))
		if code, stderr := runExit(t, 30*time.Second, "check", "--config", path); code != 0 {
			t.Errorf("check with a database directory to create: exit %d:\n%s", code, stderr)
		}
		serve(t, path)
		if fi, err := os.Stat(filepath.Join(dir, "data")); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("database directory after serve: %v, %v; want mode 0700", fi, err)
		}
	})
}
