package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/internal/login"
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

// Server answers decision requests on a unix socket. It runs in the
// front-end frame (internal/frontend): one accept loop, every connection
// tracked, Close ends them all and waits.
type Server struct {
	opts   Options
	fe     *frontend.Server
	sem    chan struct{}
	served chan struct{} // closed when the accept loop has returned
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
	s := &Server{opts: o, fe: frontend.New(o.Logger), sem: make(chan struct{}, o.MaxConcurrent), served: make(chan struct{})}
	go func() {
		defer close(s.served)
		_ = s.fe.Serve(ln, func(nc net.Conn) frontend.Conn { return &conn{s: s, nc: nc} })
	}()
	return s, nil
}

// Addr returns the socket path.
func (s *Server) Addr() string { return s.opts.Path }

// Close stops answering, ends the connections (a request in progress has
// its context cancelled; the client exits 111), waits for them and removes
// the socket. A second Close does nothing.
func (s *Server) Close() error {
	s.once.Do(func() {
		_ = s.fe.Close()
		<-s.served
	})
	return nil
}

// conn is one checkpassword connection: one request, one answer.
type conn struct {
	s  *Server
	nc net.Conn
}

// Serve answers the connection, or closes it at once when MaxConcurrent
// connections are being answered.
func (c *conn) Serve(ctx context.Context) {
	defer c.nc.Close()
	select {
	case c.s.sem <- struct{}{}:
		defer func() { <-c.s.sem }()
	default:
		c.s.opts.Logger.Warn("decision: too many requests at once; connection refused")
		return
	}
	c.s.answer(ctx, c.nc)
}

// Kill closes the connection; the protocol has no way to say why.
func (c *conn) Kill(string) { c.nc.Close() }

// Active is false: nothing is worth waiting for on shutdown.
func (c *conn) Active() bool { return false }

// answer handles one connection: one request, one answer.
func (s *Server) answer(ctx context.Context, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(Timeout))
	var req Request
	if err := readLine(c, &req); err != nil {
		s.opts.Logger.Warn("decision: bad request", "err", err)
		return // the client exits 111
	}
	a := s.decide(ctx, req)
	line, _ := json.Marshal(a)
	_, _ = c.Write(append(line, '\n'))
}

func (s *Server) decide(ctx context.Context, req Request) Answer {
	proto, ok := Protocol(req.Service)
	if !ok {
		s.opts.Logger.Warn("decision: refused: Legate does not decide for this service", "service", req.Service)
		return Answer{Outcome: "refused", Rule: "unknown_service"}
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout-time.Second)
	defer cancel()
	res := s.opts.Login.Login(ctx, login.Request{User: req.User, Secret: req.Password, IP: parseIP(req.IP),
		Protocol: proto, TLS: req.Secured, Client: "dovecot/" + req.Service})
	a := Answer{Allow: res.Allowed() && res.User != nil, Outcome: res.Outcome.String(), Rule: string(res.Rule)}
	if a.Allow {
		a.User = res.User.Name
	}
	return a
}
