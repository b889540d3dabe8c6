package daemon

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/portal"
)

// buildPortal builds listen.portal: the self-service page, over HTTPS with
// tls.* or plain HTTP without a certificate or behind a TLS-terminating
// proxy (config.PortalBehindProxy; validation allows plain HTTP only there
// or on loopback). Shutdown drains it and Close stops it like the other
// listeners. A reload applies the new portal section through reloadPortal
// (listen address, external URL and session key need a restart).
func buildPortal(d *Daemon, cfg *config.Config, _ *upstreams) (built, error) {
	log := d.log.With("listener", "portal")
	serveTLS := d.cert != nil && !cfg.PortalBehindProxy()
	var cert func() *tls.Certificate
	if d.cert != nil {
		cert = d.cert.cert.Load // signs the device set-up profiles
	}
	opts := portal.Options{Control: d.local, Config: cfg.Portal, TLS: serveTLS, Logger: log, Certificate: cert}
	if d.signOuts != nil { // never a typed nil in the interface
		opts.SignOuts = d.signOuts
	}
	p, err := portal.New(opts)
	if err != nil {
		return built{}, err
	}
	d.portal = p
	var tlsConfig *tls.Config
	if serveTLS {
		tlsConfig = d.cert.serverConfig()
	}
	srv := httpFront{&http.Server{
		Handler:           p,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	return built{srv: srv, serve: serveFunc(serveTLS, srv)}, nil
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
