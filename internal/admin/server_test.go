package admin

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/control"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// sockDir returns a short directory for sockets (sun_path is ~104 bytes).
func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestListenRefusesNonSocket: a mistyped listen.admin pointing at a file (or a
// directory, or a symlink) is refused by Listen and CheckPath, and the file
// survives untouched.
func TestListenRefusesNonSocket(t *testing.T) {
	dir := sockDir(t)
	file := filepath.Join(dir, "legate.yaml")
	if err := os.WriteFile(file, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	for _, p := range []string{file, link, sub} {
		if err := CheckPath(p); !errors.Is(err, ErrNotSocket) {
			t.Errorf("CheckPath(%s) = %v, want ErrNotSocket", p, err)
		}
		s, err := Listen(p, &control.Service{}, quiet())
		if !errors.Is(err, ErrNotSocket) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Listen(%s) = %v, want ErrNotSocket", p, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious\n" {
		t.Errorf("the file at listen.admin was changed: %q %v", b, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink at listen.admin was changed: %v %v", fi, err)
	}
	if err := CheckPath(filepath.Join(dir, "nope", "admin.sock")); err == nil {
		t.Error("CheckPath in a missing directory: no error")
	}
	if err := CheckPath(filepath.Join(dir, "admin.sock")); err != nil {
		t.Errorf("CheckPath of a free path: %v", err)
	}
}

// TestListenReplacesStaleSocket: a socket nobody answers on is removed and
// reused; a live one is ErrInUse.
func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(sockDir(t), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, &control.Service{}, quiet()); !errors.Is(err, ErrInUse) {
		t.Errorf("live socket: got %v, want ErrInUse", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if err := CheckPath(path); err != nil {
		t.Errorf("CheckPath of a stale socket: %v", err)
	}
	s, err := Listen(path, &control.Service{}, quiet())
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	s.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

// TestCloseEndsIdleConnections: a client that connects and sends nothing
// does not hold Close (it held it for two minutes before).
func TestCloseEndsIdleConnections(t *testing.T) {
	path := filepath.Join(sockDir(t), "admin.sock")
	s, err := Listen(path, &control.Service{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	c, _ := net.Dial("unix", path)
	c.Write([]byte(`{"op":"sessions",`)) // half a request
	defer c.Close()
	time.Sleep(100 * time.Millisecond) // let the server accept them
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close still waiting for idle admin clients after 2s")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with idle clients", d)
	}
	idle[0].SetReadDeadline(time.Now().Add(time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Error("idle connection still open after Close")
	}
}

// TestRequestTimeout: a client that sends nothing is cut off after the
// request deadline; one that sends in time gets its answer.
func TestRequestTimeout(t *testing.T) {
	if RequestTimeout > 10*time.Second {
		t.Errorf("RequestTimeout = %v: an idle client should be cut off within seconds", RequestTimeout)
	}
	path := filepath.Join(sockDir(t), "admin.sock")
	s, err := listen(path, &control.Service{}, quiet(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	b, _ := io.ReadAll(c)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection kept %v", d)
	}
	// The server answers a late request with an error, or just closes.
	if len(b) > 0 && !strings.Contains(string(b), "error") {
		t.Errorf("idle connection got %q", b)
	}

	c2, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	json.NewEncoder(c2).Encode(request{Op: "no.such.op"})
	var r response
	if err := json.NewDecoder(c2).Decode(&r); err != nil || !r.Usage || !strings.Contains(r.Error, "unknown operation") {
		t.Errorf("prompt request: %+v %v", r, err)
	}
}

// TestDialRefusesForeignSocket: the CLI talks only to a socket owned by root
// or by the invoking user, and never to a non-socket.
func TestDialRefusesForeignSocket(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "admin.sock")
	s, err := Listen(path, &control.Service{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Dial(path); err != nil {
		t.Fatalf("own socket: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Dial(file); !errors.Is(err, ErrNotSocket) {
		t.Errorf("Dial(regular file) = %v, want ErrNotSocket", err)
	}
	if _, err := Dial(filepath.Join(dir, "none")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Dial(missing) = %v, want ErrNotRunning", err)
	}
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("chown to another user needs root; CI runs the tests as root (scripts/test.sh)")
		}
		t.Skip("chown to another user needs root")
	}
	if err := os.Lchown(path, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(path); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Dial(socket of uid 4242) = %v, want ErrUntrusted", err)
	}
	c := &Client{Path: path}
	if _, err := c.Sessions(t.Context(), ""); !errors.Is(err, ErrUntrusted) {
		t.Errorf("call on a socket of uid 4242 = %v, want ErrUntrusted", err)
	}
}
