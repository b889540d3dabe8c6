package daemon

import (
	"context"
	"crypto/tls"
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
// HTTPS with tls.* or plain HTTP without a certificate or behind a
// TLS-terminating proxy (config.PortalBehindProxy; validation allows plain
// HTTP only there or on loopback). It joins d.fronts, so Shutdown drains it
// and Close stops it like the other listeners. A reload applies the new
// portal section through reloadPortal (listen address, external URL and
// session key need a restart).
func (d *Daemon) startPortal(cfg *config.Config) error {
	addr := cfg.Listen.Portal
	if addr == "" {
		return nil
	}
	log := d.log.With("listener", "portal")
	serveTLS := d.cert != nil && !cfg.PortalBehindProxy()
	var cert func() *tls.Certificate
	if d.cert != nil {
		cert = d.cert.cert.Load // signs the device set-up profiles
	}
	p, err := portal.New(portal.Options{Control: d.local, Config: cfg.Portal, TLS: serveTLS, Logger: log, Certificate: cert})
	if err != nil {
		return fmt.Errorf("listen.portal: %w", err)
	}
	d.portal = p
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen.portal: %w", err)
	}
	ln = d.proxyProtocol(cfg, ln) // the TCP peer is the client behind a PROXY-speaking balancer
	var tlsConfig *tls.Config
	if serveTLS {
		tlsConfig = d.cert.serverConfig()
	}
	srv := &portalServer{&http.Server{
		Handler:           p,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	d.serveFront(&frontListener{key: "portal", ln: ln, srv: srv, implicit: serveTLS})
	return nil
}

// reloadPortal gives the running portal the new portal section; a section
// it cannot use is logged and the old settings stay.
func (d *Daemon) reloadPortal(cfg *config.Config) {
	if d.portal == nil {
		return
	}
	if err := d.portal.Reload(cfg.Portal); err != nil {
		d.log.Error("portal: reload refused, keeping the running settings", "err", err)
	}
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
