// Package keyfile keeps a secret key in a file of its own: created with
// random bytes, mode 0600 and fsynced (with its directory) on first use,
// refused later if others may read or write it or if its length is wrong. The
// store's HMAC key and the portal's session key both live this way, beside
// (never inside) the data they protect.
package keyfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreate reads the key of size bytes at path, creating it when it does
// not exist. A truncated or swapped key would silently make everything it
// protects fail, so a wrong one is an error, not a fresh start. Errors read
// "key file PATH ..." for the caller to prefix.
func LoadOrCreate(path string, size int) ([]byte, error) {
	key, err := read(path, size)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, err = create(path, size)
	if errors.Is(err, fs.ErrExist) { // another process created it meanwhile
		return read(path, size)
	}
	return key, err
}

func read(path string, size int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %#o, want 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	if fi.Size() != int64(size) {
		return nil, fmt.Errorf("key file %s is %d bytes, want %d", path, fi.Size(), size)
	}
	key := make([]byte, size)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func create(path string, size int) ([]byte, error) {
	key := make([]byte, size)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("create key file: %w", err)
	}
	fail := func(err error) ([]byte, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create key file: %w", err)
	}
	// The umask may only remove bits, but be explicit anyway.
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(key); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("create key file: %w", err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("create key file: %w", err)
	}
	return key, nil
}

// SyncDir fsyncs a directory so that a newly created entry survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
