package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/control"
)

// Server answers the CLI on a unix socket.
type Server struct {
	local  *control.Local
	log    *slog.Logger
	ln     net.Listener
	path   string
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// ErrInUse: another process answers on the socket.
var ErrInUse = errors.New("admin: socket in use by another legate process")

// Listen creates the socket at path (mode 0600). A stale socket file left by a
// crashed process is removed; a live one is an error.
func Listen(path string, local *control.Local, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if _, err := os.Stat(path); err == nil {
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
	s := &Server{local: local, log: log, ln: ln, path: path, ctx: ctx, cancel: cancel}
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
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("admin: panic", "panic", r)
				}
			}()
			_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
			if err := serveOne(s.ctx, s.local, c, c); err != nil {
				s.log.Debug("admin: write response", "err", err)
			}
		}()
	}
}

// Close stops listening, waits for requests in flight and removes the socket.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	os.Remove(s.path)
	return err
}
