package daemon

import (
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

// listenAuthHTTP opens listen.auth_http: loopback host:port or
// unix:/path (mode 0660).
func listenAuthHTTP(_ *Daemon, _ *config.Config, addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// buildAuthHTTP builds listen.auth_http, nginx's mail auth_http endpoint,
// answering with the login service. It stays out of the drain (nginx keeps
// asking while the daemon drains) and gets 5s to finish its requests at
// Close.
func buildAuthHTTP(d *Daemon, cfg *config.Config, _ *upstreams) (built, error) {
	secret, err := config.ReadSecretFile(cfg.AuthHTTP.SecretFile)
	if err != nil {
		return built{}, fmt.Errorf("auth_http.secret_file: %w", err)
	}
	h := authhttp.Handler(authhttp.Options{Login: d.auth, Header: cfg.AuthHTTP.Header, Secret: secret, Logger: d.log,
		Upstream: func(p string) *upstream.Config {
			u := d.rt.Load().ups
			if p == policy.SMTP {
				return u.SMTP
			}
			return u.IMAP
		}})
	srv := httpFront{&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}}
	return built{srv: srv, serve: srv.Serve, closeGrace: 5 * time.Second}, nil
}
