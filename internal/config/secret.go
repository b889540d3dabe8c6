package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
)

// maxSecretSize bounds a secret file; secrets are short.
const maxSecretSize = 64 << 10

// ErrSecretEmpty: the secret file holds nothing but white space.
var ErrSecretEmpty = errors.New("secret file is empty")

// ErrSecretExposed: the secret file is readable by every user on the machine.
var ErrSecretExposed = errors.New("secret file is world-readable")

// ReadSecretFile reads a secret (a password) from path and trims one trailing
// newline (LF or CRLF). It refuses an empty secret, a file that is not a
// regular file and a world-readable one (mode & 0o004); group-readable files
// such as root:legate 0640 are fine. Errors name the file, never its content,
// and carry no prefix: callers add the key (Config.CheckSecrets adds
// file:line and the key). A missing file matches fs.ErrNotExist.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read secret file %s: %w", path, pathErr(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("cannot read secret file %s: %w", path, pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("secret file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("%w: %s (mode %04o); run chmod o-rwx on it", ErrSecretExposed, path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("cannot read secret file %s: %w", path, pathErr(err))
	}
	if len(data) > maxSecretSize {
		return "", fmt.Errorf("secret file %s is larger than %d bytes", path, maxSecretSize)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(bytes.TrimSpace(data)) == 0 {
		return "", fmt.Errorf("%w: %s", ErrSecretEmpty, path)
	}
	return string(data), nil
}

// pathErr drops the operation and path of a *fs.PathError (the message
// names the path already), keeping the cause for errors.Is.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// secretKeys lists the *_file keys holding secrets that the configuration
// uses, with their paths (only those set).
func (c *Config) secretKeys() []keyedFile {
	all := []keyedFile{
		{"upstream.imap.master_password_file", c.Upstream.IMAP.MasterPasswordFile},
		{"upstream.smtp.master_password_file", c.Upstream.SMTP.MasterPasswordFile},
		{"upstream.ldap.bind_password_file", c.Upstream.LDAP.BindPasswordFile},
	}
	if c.Storage.Backend == "etcd" {
		all = append(all, keyedFile{"storage.etcd.password_file", c.Storage.Etcd.PasswordFile})
	}
	if c.Listen.Portal != "" {
		all = append(all, keyedFile{"portal.oidc.client_secret_file", c.Portal.OIDC.ClientSecretFile})
	}
	return named(all)
}

// CheckSecrets reads every secret file the configuration uses and returns
// each problem (missing, unreadable, world-readable, empty, not a regular
// file) as an *Error naming file:line and the key, all of them in one
// Errors (use errors.As); nil when all are fine. The secrets themselves are
// dropped. A missing file's *Error matches fs.ErrNotExist.
func (c *Config) CheckSecrets() error {
	var errs Errors
	for _, s := range c.secretKeys() {
		if _, err := ReadSecretFile(s.path); err != nil {
			errs = append(errs, &Error{File: c.file, Line: c.line(s.key), Key: s.key, Msg: err.Error(), cause: err})
		}
	}
	return errs.err()
}

// WithoutFiles returns a copy of c in which the file keys named by errs
// (from CheckSecrets or CheckFiles) are unset, so that checking the rest of
// the configuration does not read those files again. c is unchanged.
func (c *Config) WithoutFiles(errs Errors) *Config {
	cp := *c
	keys := map[string]*string{
		"upstream.imap.master_password_file": &cp.Upstream.IMAP.MasterPasswordFile,
		"upstream.smtp.master_password_file": &cp.Upstream.SMTP.MasterPasswordFile,
		"upstream.ldap.bind_password_file":   &cp.Upstream.LDAP.BindPasswordFile,
		"storage.etcd.password_file":         &cp.Storage.Etcd.PasswordFile,
		"portal.oidc.client_secret_file":     &cp.Portal.OIDC.ClientSecretFile,
		"tls.cert_file":                      &cp.TLS.CertFile,
		"tls.key_file":                       &cp.TLS.KeyFile,
		"upstream.imap.ca_file":              &cp.Upstream.IMAP.CAFile,
		"upstream.smtp.ca_file":              &cp.Upstream.SMTP.CAFile,
		"upstream.ldap.ca_file":              &cp.Upstream.LDAP.CAFile,
		"storage.etcd.tls.ca_file":           &cp.Storage.Etcd.TLS.CAFile,
		"storage.etcd.tls.cert_file":         &cp.Storage.Etcd.TLS.CertFile,
		"storage.etcd.tls.key_file":          &cp.Storage.Etcd.TLS.KeyFile,
	}
	for _, e := range errs {
		if p, ok := keys[e.Key]; ok {
			*p = ""
		}
	}
	// A certificate without its key (or the reverse) is not checked alone.
	if cp.TLS.CertFile == "" || cp.TLS.KeyFile == "" {
		cp.TLS.CertFile, cp.TLS.KeyFile = "", ""
	}
	if cp.Storage.Etcd.TLS.CertFile == "" || cp.Storage.Etcd.TLS.KeyFile == "" {
		cp.Storage.Etcd.TLS.CertFile, cp.Storage.Etcd.TLS.KeyFile = "", ""
	}
	return &cp
}

// fileKeys lists the other files the configuration reads at start (PEM
// certificates, keys and CAs), only those set.
func (c *Config) fileKeys() []keyedFile {
	all := []keyedFile{
		{"tls.cert_file", c.TLS.CertFile},
		{"tls.key_file", c.TLS.KeyFile},
		{"upstream.imap.ca_file", c.Upstream.IMAP.CAFile},
		{"upstream.smtp.ca_file", c.Upstream.SMTP.CAFile},
		{"upstream.ldap.ca_file", c.Upstream.LDAP.CAFile},
	}
	if c.Storage.Backend == "etcd" {
		all = append(all,
			keyedFile{"storage.etcd.tls.ca_file", c.Storage.Etcd.TLS.CAFile},
			keyedFile{"storage.etcd.tls.cert_file", c.Storage.Etcd.TLS.CertFile},
			keyedFile{"storage.etcd.tls.key_file", c.Storage.Etcd.TLS.KeyFile})
	}
	return named(all)
}

// CheckFiles checks that every certificate, key and CA file the
// configuration names can be opened and is a regular file, and returns each
// problem as an *Error with file:line and the key (all in one Errors; nil
// when all are fine). Their content is parsed where they are used. A
// missing file's *Error matches fs.ErrNotExist.
func (c *Config) CheckFiles() error {
	var errs Errors
	for _, f := range c.fileKeys() {
		if err := readable(f.path); err != nil {
			errs = append(errs, &Error{File: c.file, Line: c.line(f.key), Key: f.key, Msg: err.Error(), cause: err})
		}
	}
	return errs.err()
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, pathErr(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// keyedFile is a file a configuration key names.
type keyedFile struct{ key, path string }

// named keeps the files whose key is set.
func named(all []keyedFile) []keyedFile {
	return slices.DeleteFunc(all, func(f keyedFile) bool { return f.path == "" })
}
