package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/legate-proxy/legate/internal/authhttp"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// authHTTPServer is listen.auth_http: nginx's mail auth_http endpoint.
type authHTTPServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startAuthHTTP listens on listen.auth_http (loopback host:port or
// unix:/path, mode 0660) and answers with the login service.
func (d *Daemon) startAuthHTTP(cfg *config.Config) (*authHTTPServer, error) {
	secret, err := config.ReadSecretFile(cfg.AuthHTTP.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("auth_http.secret_file: %w", err)
	}
	var ln net.Listener
	if path, ok := strings.CutPrefix(cfg.Listen.AuthHTTP, "unix:"); ok {
		_ = os.Remove(path)
		if ln, err = net.Listen("unix", path); err == nil {
			err = os.Chmod(path, 0o660)
		}
	} else {
		ln, err = net.Listen("tcp", cfg.Listen.AuthHTTP)
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("listen.auth_http: %w", err)
	}
	h := authhttp.Handler(authhttp.Options{Login: d.auth, Header: cfg.AuthHTTP.Header, Secret: secret, Logger: d.log,
		Upstream: func(p string) *upstream.Config {
			u := d.rt.Load().ups
			if p == policy.SMTP {
				return u.SMTP
			}
			return u.IMAP
		}})
	s := &authHTTPServer{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("auth_http: serve", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *authHTTPServer) Addr() net.Addr { return s.ln.Addr() }

func (s *authHTTPServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}
