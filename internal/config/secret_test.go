package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSecretFile(t *testing.T) {
	const secret = "s3cr3t-Value"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
		wantErr error // nil: success; errAny: some error
	}{
		{"trailing newline", secret + "\n", 0o600, secret, nil},
		{"crlf", secret + "\r\n", 0o600, secret, nil},
		{"no newline", secret, 0o400, secret, nil},
		{"inner spaces kept", " a b ", 0o600, " a b ", nil},
		{"group readable", secret + "\n", 0o640, secret, nil},
		{"world readable", secret + "\n", 0o644, "", ErrSecretExposed},
		{"empty", "", 0o600, "", ErrSecretEmpty},
		{"only newline", "\n", 0o600, "", ErrSecretEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.secret")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := ReadSecretFile(path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadSecretFileMissingAndDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadSecretFile(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want os.ErrNotExist", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: got %v, want not a regular file", err)
	}
}
