package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/oauth"
	"github.com/legate-proxy/legate/internal/upstream"
)

// frontServer is what every proxy/<protocol> server provides.
type frontServer interface {
	Serve(ln net.Listener) error
	ServeTLS(ln net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
}

// frontListener is one configured listener and the server behind it.
type frontListener struct {
	key      string // listen.<key>
	ln       net.Listener
	srv      frontServer
	implicit bool
	// reconfigure applies a reloaded configuration to srv.
	reconfigure func(cfg *config.Config, ups *upstreams)
	done        chan struct{}
}

// upstreams are the configured upstream servers; nil when not configured.
type upstreams struct {
	IMAP, SMTP, LDAP *upstream.Config
}

func buildUpstreams(cfg *config.Config, log *slog.Logger, obs oauth.Observer) (*upstreams, error) {
	dial := cfg.Limits.DialTimeout.Std()
	var u upstreams
	var err error
	var errs []error
	if u.IMAP, err = MailUpstream(cfg.Upstream.IMAP, dial, log, "upstream.imap", obs); err != nil {
		errs = append(errs, err)
	}
	if u.SMTP, err = MailUpstream(cfg.Upstream.SMTP, dial, log, "upstream.smtp", obs); err != nil {
		errs = append(errs, err)
	}
	if u.LDAP, err = LDAPUpstream(cfg.Upstream.LDAP, dial, log); err != nil {
		errs = append(errs, err)
	}
	return &u, errors.Join(errs...)
}

// listenerSpec says how to build the server of one listener key.
type listenerSpec struct {
	key      string
	addr     func(*config.Config) string
	implicit bool
	build    func(d *Daemon, cfg *config.Config, ups *upstreams) (frontServer, func(*config.Config, *upstreams), error)
}

func (d *Daemon) startFrontEnds(cfg *config.Config, ups *upstreams) error {
	for _, spec := range d.listenerSpecs() {
		addr := spec.addr(cfg)
		if addr == "" {
			continue
		}
		srv, reconf, err := spec.build(d, cfg, ups)
		if err != nil {
			return fmt.Errorf("listen.%s: %w", spec.key, err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen.%s: %w", spec.key, err)
		}
		ln = d.proxyProtocol(cfg, ln)
		d.serveFront(&frontListener{key: spec.key, ln: ln, srv: srv, implicit: spec.implicit, reconfigure: reconf})
	}
	return nil
}

// serveFront registers f and serves it on its own goroutine, which ends
// (closing f.done) when the server is closed.
func (d *Daemon) serveFront(f *frontListener) {
	f.done = make(chan struct{})
	d.fronts = append(d.fronts, f)
	go func() {
		defer close(f.done)
		var err error
		if f.implicit {
			err = f.srv.ServeTLS(f.ln)
		} else {
			err = f.srv.Serve(f.ln)
		}
		if err != nil && !isClosed(err) {
			d.log.Error("listener stopped", "listener", f.key, "err", err)
		}
	}()
}

func (d *Daemon) reconfigureFrontEnds(cfg *config.Config, ups *upstreams) {
	for _, f := range d.fronts {
		if f.reconfigure != nil {
			f.reconfigure(cfg, ups)
		}
	}
}

func (d *Daemon) listenerNames() []string {
	var names []string
	for _, f := range d.fronts {
		names = append(names, f.key+"="+f.ln.Addr().String())
	}
	return names
}
