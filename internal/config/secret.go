package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxSecretSize bounds a secret file; secrets are short.
const maxSecretSize = 64 << 10

// ErrSecretEmpty: the secret file holds nothing but white space.
var ErrSecretEmpty = errors.New("config: secret file is empty")

// ErrSecretExposed: the secret file is readable by every user on the machine.
var ErrSecretExposed = errors.New("config: secret file is world-readable")

// ReadSecretFile reads a secret (a password) from path and trims one trailing
// newline (LF or CRLF). It refuses an empty secret, a file that is not a
// regular file and a world-readable one (mode & 0o004); group-readable files
// such as root:legate 0640 are fine. Errors name the file, never its content.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("config: secret: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("config: secret: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("config: secret %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("%w: %s (mode %04o); run chmod o-rwx on it", ErrSecretExposed, path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("config: secret %s: read failed", path)
	}
	if len(data) > maxSecretSize {
		return "", fmt.Errorf("config: secret %s: larger than %d bytes", path, maxSecretSize)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(bytes.TrimSpace(data)) == 0 {
		return "", fmt.Errorf("%w: %s", ErrSecretEmpty, path)
	}
	return string(data), nil
}
