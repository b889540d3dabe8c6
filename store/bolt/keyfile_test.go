package bolt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/store"
)

func TestKeyFileCreated0600(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, dir)
	_, secret := mustCreate(t, b, "alice", "Laptop")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "hmac.key")
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode: got %#o, want 0600", got)
	}
	if fi.Size() != store.KeySize {
		t.Errorf("key file size: got %d, want %d", fi.Size(), store.KeySize)
	}
	if fi, err := os.Stat(filepath.Join(dir, "legate.db")); err != nil {
		t.Error(err)
	} else if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("database file mode: got %#o, want 0600", got)
	}
	key, _ := os.ReadFile(keyPath)
	if db, _ := os.ReadFile(filepath.Join(dir, "legate.db")); bytes.Contains(db, key) {
		t.Error("the HMAC key is inside the database file")
	}
	// Reopen: same key, so the secret still verifies.
	b = openTest(t, dir)
	if _, err := b.Verify(context.Background(), "alice", secret); err != nil {
		t.Errorf("Verify after reopen: %v", err)
	}
}

func TestKeyFileRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    []string
	}{
		{"group readable", make([]byte, store.KeySize), 0o640, []string{"hmac.key", "0640"}},
		{"world readable", make([]byte, store.KeySize), 0o644, []string{"hmac.key", "0644"}},
		{"too short", make([]byte, 16), 0o600, []string{"hmac.key", "16 bytes, want 32"}},
		{"empty", nil, 0o600, []string{"hmac.key", "0 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			keyPath := filepath.Join(dir, "hmac.key")
			if err := os.WriteFile(keyPath, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(keyPath, tc.mode); err != nil {
				t.Fatal(err)
			}
			b, err := Open(context.Background(), Options{Path: filepath.Join(dir, "legate.db")})
			if err == nil {
				b.Close()
				t.Fatal("Open: got nil error, want refusal")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want it to mention %q", err, w)
				}
			}
			// The failed open must release the database lock.
			b = openTest(t, dir, func(o *Options) { o.KeyFile = filepath.Join(dir, "other.key") })
			b.Close()
		})
	}
}

func TestKeyFileOption(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(t.TempDir(), "custom.key")
	openTest(t, dir, func(o *Options) { o.KeyFile = keyPath })
	if _, err := os.Stat(keyPath); err != nil {
		t.Errorf("custom key file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hmac.key")); !os.IsNotExist(err) {
		t.Errorf("default key file: got %v, want none", err)
	}
	_, err := Open(context.Background(), Options{Path: filepath.Join(dir, "x.db"), KeyFile: filepath.Join(dir, "x.db")})
	if err == nil || !strings.Contains(err.Error(), "must not be the database") {
		t.Errorf("key file = database: got %v, want refusal", err)
	}
}
