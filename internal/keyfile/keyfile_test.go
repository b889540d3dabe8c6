package keyfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key")
	k1, err := LoadOrCreate(path, 32)
	if err != nil || len(k1) != 32 {
		t.Fatalf("create: got %d bytes, %v; want 32, nil", len(k1), err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: got %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	k2, err := LoadOrCreate(path, 32)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("reload: got a different key or %v", err)
	}
	if _, err := LoadOrCreate(path, 16); err == nil || !strings.Contains(err.Error(), "is 32 bytes, want 16") {
		t.Errorf("wrong length: got %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreate(path, 32); err == nil || !strings.Contains(err.Error(), "has mode 0644") {
		t.Errorf("world-readable: got %v, want a mode error", err)
	}
	if _, err := LoadOrCreate(t.TempDir(), 32); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: got %v", err)
	}
}
