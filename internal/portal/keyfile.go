package portal

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeySize is the length in bytes of the session key file (an AES-256 key).
const KeySize = 32

// LoadOrCreateKey reads the session key at path, creating it (KeySize random
// bytes, mode 0600, synced with its directory) when it does not exist, like
// the store's HMAC key. It refuses a key file others can read or write, or
// one of the wrong length.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, err = createKey(path)
	if errors.Is(err, fs.ErrExist) { // another process won the race
		return readKey(path)
	}
	return key, err
}

func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("portal: session key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("portal: session key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("portal: session key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("portal: session key file %s has mode %#o, want 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	if fi.Size() != KeySize {
		return nil, fmt.Errorf("portal: session key file %s is %d bytes, want %d", path, fi.Size(), KeySize)
	}
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("portal: session key file %s: %w", path, err)
	}
	return key, nil
}

func createKey(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("portal: create session key file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("portal: session key file: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("portal: write session key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("portal: sync session key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("portal: session key file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return key, nil
}
