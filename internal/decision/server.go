package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"
)

// Login is the login service; *auth.Service is one.
type Login interface {
	Login(ctx context.Context, req login.Request) login.Result
}

// Options configure a Server.
type Options struct {
	// Path is the socket (listen.decision); required.
	Path string
	// Group owns the socket (decision.socket_group); "" keeps the daemon's
	// own group. The mode is always 0660: only the owner and that group
	// may connect.
	Group string
	// Login decides; required.
	Login Login
	// MaxConcurrent bounds connections being answered; more are closed at
	// once (checkpassword then exits 111). Zero means 64.
	MaxConcurrent int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Server answers decision requests on a unix socket.
type Server struct {
	opts   Options
	ln     net.Listener
	sem    chan struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// ErrInUse: another process answers on the socket.
var ErrInUse = errors.New("decision: socket in use by another process")

// Listen creates the socket (a stale file left by a crash is replaced) and
// starts answering.
func Listen(o Options) (*Server, error) {
	if o.Path == "" || o.Login == nil {
		return nil, errors.New("decision: Options.Path and Options.Login are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 64
	}
	gid := -1
	if o.Group != "" {
		g, err := user.LookupGroup(o.Group)
		if err != nil {
			return nil, fmt.Errorf("decision: decision.socket_group %q: %w", o.Group, err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("decision: group %q has gid %q", o.Group, g.Gid)
		}
	}
	if _, err := os.Lstat(o.Path); err == nil {
		if c, err := net.DialTimeout("unix", o.Path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrInUse, o.Path)
		}
		if err := os.Remove(o.Path); err != nil {
			return nil, fmt.Errorf("decision: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", o.Path)
	if err != nil {
		return nil, fmt.Errorf("decision: listen: %w", err)
	}
	// Until chmod and chown are done the socket may be more open than it
	// should: refuse nothing yet, because nothing is accepted yet.
	if err := os.Chown(o.Path, -1, gid); err != nil {
		ln.Close()
		return nil, fmt.Errorf("decision: chown socket: %w", err)
	}
	if err := os.Chmod(o.Path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("decision: chmod socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: o, ln: ln, sem: make(chan struct{}, o.MaxConcurrent), ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr returns the socket path.
func (s *Server) Addr() string { return s.opts.Path }

// Close stops answering, waits for the answers in progress and removes the
// socket. A second Close does nothing.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.ln.Close()
		s.wg.Wait()
	})
	return nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.opts.Logger.Error("decision: accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.opts.Logger.Warn("decision: too many requests at once; connection refused")
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			defer c.Close()
			s.answer(c)
		}()
	}
}

// answer handles one connection: one request, one answer.
func (s *Server) answer(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(Timeout))
	var req Request
	if err := readLine(c, &req); err != nil {
		s.opts.Logger.Warn("decision: bad request", "err", err)
		return // the client exits 111
	}
	a := s.decide(req)
	line, _ := json.Marshal(a)
	_, _ = c.Write(append(line, '\n'))
}

func (s *Server) decide(req Request) Answer {
	proto, ok := Protocol(req.Service)
	if !ok {
		s.opts.Logger.Warn("decision: refused: Legate does not decide for this service", "service", req.Service)
		return Answer{Outcome: "refused", Rule: "unknown_service"}
	}
	ctx, cancel := context.WithTimeout(s.ctx, Timeout-time.Second)
	defer cancel()
	res := s.opts.Login.Login(ctx, login.Request{User: req.User, Secret: req.Password, IP: parseIP(req.IP),
		Protocol: proto, TLS: req.Secured, Client: "dovecot/" + req.Service})
	a := Answer{Allow: res.Allowed() && res.User != nil, Outcome: res.Outcome.String(), Rule: string(res.Rule)}
	if a.Allow {
		a.User = res.User.Name
	}
	return a
}
