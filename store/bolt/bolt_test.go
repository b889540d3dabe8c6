package bolt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
)

// testLogger sends the store's logs through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// openTest opens a store in dir (a new temp dir when empty) and closes it at
// the end of the test.
func openTest(t testing.TB, dir string, mod ...func(*Options)) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	opts := Options{Path: filepath.Join(dir, "legate.db"), Logger: testLogger(t), FlushInterval: time.Hour}
	for _, m := range mod {
		m(&opts)
	}
	b, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func mustCreate(t testing.TB, b *Store, user, name string) (store.AppPassword, string) {
	t.Helper()
	p, secret, err := b.Create(context.Background(), store.CreateRequest{User: user, Name: name})
	if err != nil {
		t.Fatalf("Create(%s, %s): %v", user, name, err)
	}
	return p, secret
}

func ids(ps []store.AppPassword) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	path := filepath.Join(dir, "legate.db")
	if pid := readPid(path + ".pid"); pid != os.Getpid() {
		t.Errorf("pid file: got %d, want %d", pid, os.Getpid())
	}
	start := time.Now()
	_, err := Open(context.Background(), Options{Path: path, OpenTimeout: 100 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("database %s is locked by another legate process (pid %d) — use the admin socket or stop it", path, os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error text: got %q, want it to contain %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v, want about the 100ms timeout", d)
	}
}

func TestPidFileRemovedOnClose(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "legate.db.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file after Close: got %v, want it gone", err)
	}
}
