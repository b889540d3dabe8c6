package daemon

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal"
	"github.com/legate-proxy/legate/store"
)

// checkStorage checks what `serve` will need from the storage without
// opening the database (which would take the lock a running serve holds):
// the database directory exists and is writable, the key file, when it
// exists, is a regular file of store.KeySize bytes with mode 0600 or
// stricter, and the etcd password and TLS files are readable. The messages
// are those `serve` would print (docs/troubleshooting.md).
func checkStorage(cfg *config.Config) error {
	var errs []error
	keyPath := cfg.Storage.KeyFile
	switch cfg.Storage.Backend {
	case "", "bolt":
		if keyPath == "" && cfg.Storage.Path != "" {
			keyPath = filepath.Join(filepath.Dir(cfg.Storage.Path), "hmac.key")
		}
		if cfg.Storage.Path != "" {
			if err := checkWritableDir(filepath.Dir(cfg.Storage.Path)); err != nil {
				errs = append(errs, fmt.Errorf("storage.path: %w", err))
			}
		}
	case "etcd":
		if _, err := etcdOptions(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			errs = append(errs, err)
		}
	}
	if keyPath != "" {
		if err := checkKeyFile(keyPath, store.KeySize); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkWritableDir reports whether dir is a directory this process may
// write (the database and its key are created there). A directory that
// does not exist yet passes when serve can create it (OpenStore does, mode
// 0700): its nearest existing parent must be a writable directory.
func checkWritableDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("database directory: %w", err)
		}
		if err := checkWritableDir(parent); err != nil {
			return err
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("database directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("database directory %s is not a directory", dir)
	}
	if err := syscall.Access(dir, 0o2|0o1); err != nil { // W_OK|X_OK
		return fmt.Errorf("database directory %s is not writable: %w", dir, err)
	}
	return nil
}

// checkKeyFile applies the rules the store applies when it reads an
// existing key file (internal/keyfile); a missing one is created at the
// first start and passes.
func checkKeyFile(path string, size int) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("store: key file: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("store: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("store: key file %s has mode %#o, want 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	if fi.Size() != int64(size) {
		return fmt.Errorf("store: key file %s is %d bytes, want %d", path, fi.Size(), size)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: key file: %w", err)
	}
	return f.Close()
}

// checkPortalSecrets reads the portal's secret files, as its start would.
func checkPortalSecrets(cfg *config.Config) error {
	if cfg.Listen.Portal == "" {
		return nil
	}
	var errs []error
	if f := cfg.Portal.OIDC.ClientSecretFile; f != "" {
		if _, err := config.ReadSecretFile(f); err != nil {
			errs = append(errs, fmt.Errorf("portal.oidc.client_secret_file: %w", err))
		}
	}
	if f := cfg.Portal.SessionKeyFile; f != "" {
		if err := checkKeyFile(f, portal.KeySize); err != nil {
			errs = append(errs, fmt.Errorf("portal.session_key_file: %w", err))
		}
	}
	return errors.Join(errs...)
}
