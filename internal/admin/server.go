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
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/control"
)

// RequestTimeout bounds how long a connection may take to send its request
// (and to read the answer). A client that connects and sends nothing is cut
// off after it, so it can neither pile up connections nor hold a shutdown.
const RequestTimeout = 5 * time.Second

// OperationTimeout bounds one operation once its request has arrived (a
// report over a long audit log, a revocation on a slow etcd).
const OperationTimeout = time.Minute

// Server answers the CLI on a unix socket.
type Server struct {
	local  *control.Service
	log    *slog.Logger
	ln     net.Listener
	path   string
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	// requestTimeout is RequestTimeout; tests shorten it (set before serving).
	requestTimeout time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
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
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{local: local, log: log, ln: ln, path: path, ctx: ctx, cancel: cancel,
		requestTimeout: requestTimeout, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("admin: panic", "panic", r)
				}
			}()
			s.handle(c)
		}()
	}
}

// handle answers one connection: the request must arrive within
// requestTimeout, the operation gets OperationTimeout, the answer
// requestTimeout again.
func (s *Server) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(s.requestTimeout))
	_ = c.SetWriteDeadline(time.Now().Add(s.requestTimeout + OperationTimeout))
	if err := serveOne(s.ctx, s.local, c, c); err != nil {
		s.log.Debug("admin: write response", "err", err)
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close stops listening, ends open connections (an idle client must not
// hold a shutdown), cancels requests in flight, waits for them and removes
// the socket.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
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
