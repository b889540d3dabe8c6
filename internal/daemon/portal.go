package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal"
)

// startPortal starts listen.portal, if set: the self-service page, over
// HTTPS with tls.* or, without a certificate, plain HTTP (config validation
// allows that only on loopback, e.g. behind a TLS proxy). It joins d.fronts,
// so Shutdown drains it and Close stops it like the other listeners. Portal
// settings take effect at start (a reload does not change them).
func (d *Daemon) startPortal(cfg *config.Config) error {
	addr := cfg.Listen.Portal
	if addr == "" {
		return nil
	}
	log := d.log.With("listener", "portal")
	p, err := portal.New(portal.Options{Control: d.local, Config: cfg.Portal, TLS: d.cert != nil, Logger: log})
	if err != nil {
		return fmt.Errorf("listen.portal: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen.portal: %w", err)
	}
	srv := &portalServer{&http.Server{
		Handler:           p,
		TLSConfig:         d.cert.serverConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	d.serveFront(&frontListener{key: "portal", ln: ln, srv: srv, implicit: d.cert != nil})
	return nil
}

// portalServer adapts http.Server to frontServer.
type portalServer struct{ srv *http.Server }

func (s *portalServer) Serve(ln net.Listener) error { return closedErr(s.srv.Serve(ln)) }

func (s *portalServer) ServeTLS(ln net.Listener) error {
	return closedErr(s.srv.ServeTLS(ln, "", "")) // certificate from TLSConfig
}

func (s *portalServer) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

func (s *portalServer) Close() error { return s.srv.Close() }

// closedErr maps http.ErrServerClosed to net.ErrClosed, which isClosed knows.
func closedErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return net.ErrClosed
	}
	return err
}

// reloadPortal gives the running portal the new portal section.
//
// TODO(lead): the portal helper's branch (w-portal) adds d.portal and
// portal.(*Portal).Reload(config.Portal) with this same method; keep theirs
// when merging. Until then the portal keeps its start-up settings.
func (d *Daemon) reloadPortal(*config.Config) {}
