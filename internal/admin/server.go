package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/frontend"
)

// RequestTimeout bounds how long a connection may take to send its request
// (and to read the answer). A client that connects and sends nothing is cut
// off after it, so it can neither pile up connections nor hold a shutdown.
const RequestTimeout = 5 * time.Second

// OperationTimeout bounds one operation once its request has arrived (a
// report over a long audit log, a revocation on a slow etcd).
const OperationTimeout = time.Minute

// Server answers the CLI on a unix socket. It runs in the front-end frame
// (internal/frontend): one accept loop, every connection tracked, Close
// ends them all and waits.
type Server struct {
	local  *control.Service
	fe     *frontend.Server
	path   string
	served chan struct{} // closed when the accept loop has returned

	// requestTimeout is RequestTimeout; tests shorten it (set before serving).
	requestTimeout time.Duration
}

// ErrInUse: another process answers on the socket.
var ErrInUse = errors.New("admin: socket in use by another legate process")

// ErrNotSocket: something other than a unix socket is at listen.admin.
// Legate never removes it: a mistyped path must not cost a file.
var ErrNotSocket = errors.New("not a unix socket: Legate leaves it alone (is listen.admin mistyped?)")

// CheckPath reports whether Listen could use path without harming anything:
// nothing there yet (in an existing directory), or a unix socket (live or
// stale). `legate check` calls it; Listen applies the same rule.
func CheckPath(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(path)
		if di, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return missingDir(dir)
		} else if err != nil {
			return err
		} else if !di.IsDir() {
			return fmt.Errorf("the directory of %s is not a directory", path)
		}
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("%s is a %s, %w", path, kind(fi.Mode()), ErrNotSocket)
	}
	return nil
}

// kind names a file type for messages.
func kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "non-socket file"
}

// Listen creates the socket at path (mode 0600). A stale socket left by a
// crashed process is removed; a live one is ErrInUse; anything that is not a
// socket is ErrNotSocket and stays as it is.
func Listen(path string, local *control.Service, log *slog.Logger) (*Server, error) {
	return listen(path, local, log, RequestTimeout)
}

func listen(path string, local *control.Service, log *slog.Logger, requestTimeout time.Duration) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin: listen.admin %s is a %s, %w", path, kind(fi.Mode()), ErrNotSocket)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin: remove stale socket: %w", err)
		}
		log.Info("removed stale admin socket", "path", path)
	}
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: chmod socket: %w", err)
	}
	s := &Server{local: local, fe: frontend.New(log), path: path, served: make(chan struct{}),
		requestTimeout: requestTimeout}
	go func() {
		defer close(s.served)
		_ = s.fe.Serve(ln, func(nc net.Conn) frontend.Conn { return &conn{s: s, nc: nc, log: log} })
	}()
	return s, nil
}

// conn is one CLI connection: one request, one answer.
type conn struct {
	s   *Server
	nc  net.Conn
	log *slog.Logger
}

// Serve answers the connection: the request must arrive within
// requestTimeout, the operation gets OperationTimeout, the answer
// requestTimeout again. ctx (the frame's) is cancelled by Close.
func (c *conn) Serve(ctx context.Context) {
	defer c.nc.Close()
	_ = c.nc.SetReadDeadline(time.Now().Add(c.s.requestTimeout))
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.requestTimeout + OperationTimeout))
	if err := serveOne(ctx, c.s.local, c.nc, c.nc); err != nil {
		c.log.Debug("admin: write response", "err", err)
	}
}

// Kill closes the connection (an idle client must not hold a shutdown).
func (c *conn) Kill(string) { c.nc.Close() }

// Active is false: Close does not wait for a client to finish.
func (c *conn) Active() bool { return false }

// Close stops listening, ends open connections, cancels requests in flight,
// waits for them and removes the socket.
func (s *Server) Close() error {
	err := s.fe.Close()
	<-s.served
	if fi, lerr := os.Lstat(s.path); lerr == nil && fi.Mode().Type() == fs.ModeSocket {
		os.Remove(s.path)
	}
	return err
}

// missingDir: the directory that is to hold the socket does not exist
// (matches fs.ErrNotExist).
type missingDir string

func (d missingDir) Error() string { return "directory " + string(d) + " does not exist" }
func (d missingDir) Unwrap() error { return fs.ErrNotExist }
