// Package testenv is the test harness for integration tests against real
// upstream servers: Dovecot (IMAP, submission, master user), Postfix's
// smtp-sink and OpenLDAP slapd, each run as a child process in a temporary
// directory on loopback ports.
//
// A test that needs a server binary calls Require first: when the binary is
// missing the test is skipped, unless the environment variable CI is "true",
// in which case it fails. Everything a helper starts is stopped by
// t.Cleanup.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// searchDirs are looked at after PATH: daemons live in sbin directories
// that a normal user's PATH often lacks, and some helpers live in lib dirs.
var searchDirs = []string{
	"/usr/sbin",
	"/sbin",
	"/usr/local/sbin",
	"/usr/lib/dovecot",
	"/usr/lib/postfix/sbin",
}

// LookPath finds a binary by name on PATH or in the usual sbin and lib
// directories (/usr/sbin, /usr/lib/dovecot, /usr/lib/postfix/sbin, ...).
// A name containing a slash is checked as is.
func LookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return exec.LookPath(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range searchDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("testenv: %s: %w", name, exec.ErrNotFound)
}

// InCI reports whether the environment variable CI is "true": then a
// missing server binary fails the test instead of skipping it.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips the test (or fails it when CI=true) unless every named
// binary is found by LookPath.
func Require(t testing.TB, bins ...string) {
	t.Helper()
	var missing []string
	for _, b := range bins {
		if _, err := LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("testenv: missing binaries %s (install with scripts/install-deps.sh)", strings.Join(missing, ", "))
	if InCI() {
		t.Fatalf("%s; CI=true so this is a failure", msg)
	}
	t.Skipf("%s; skipping (set CI=true to fail instead)", msg)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process can take it before the caller binds it; the harness
// accepts that small race because the upstream servers need a port number
// in their configuration, not a listener.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:<FreePort>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// WaitPort waits until a TCP connection to addr succeeds or ctx ends.
func WaitPort(ctx context.Context, addr string) error {
	var d net.Dialer
	delay := 10 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: wait for %s: %w (last error: %v)", addr, ctx.Err(), err)
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// WaitPortClosed waits until a TCP connection to addr is refused or ctx
// ends.
func WaitPortClosed(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("testenv: wait for %s to close: %w", addr, ctx.Err())
			}
			return nil
		}
		c.Close()
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: wait for %s to close: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TempDir returns a new, short directory under os.TempDir() that is
// removed when the test ends. Unlike t.TempDir it is mode 0711, so the
// unprivileged users that servers drop to when started as root (dovecot,
// dovenull, nobody, openldap) can reach files below it. The path is kept
// short because Dovecot puts UNIX sockets below its base_dir and socket
// paths are limited to about 100 bytes.
//
// TempDir fails the test if a parent directory is not searchable by
// others (for example TMPDIR pointing into a 0700 home directory while
// running as root).
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "testenv-")
	if err != nil {
		t.Fatalf("testenv: temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("testenv: remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatalf("testenv: temp dir: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := checkSearchable(filepath.Dir(dir)); err != nil {
			t.Fatalf("testenv: temp dir %s: %v (set TMPDIR to a directory like /tmp)", dir, err)
		}
	}
	return dir
}

// checkSearchable reports an error unless dir and all its parents can be
// traversed by other users.
func checkSearchable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by other users (mode %v)", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// Chown hands path to the named system user (and that user's primary
// group) when running as root; otherwise it does nothing. It is for
// directories a server writes into after dropping privileges.
func Chown(path, user string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := lookupUser(user)
	if err != nil {
		return err
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("testenv: chown %s: %w", path, err)
	}
	return nil
}

// lookupUser returns the numeric uid and primary gid of a user name.
func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: user %s: %w", name, err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: user %s: gid %q: %w", name, u.Gid, err)
	}
	return uid, gid, nil
}
