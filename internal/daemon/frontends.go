package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/internal/oauth"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// frontServer is the contract every listener's server keeps: the
// protocol front-ends (proxy/imap, proxy/smtp, proxy/ldap, all on
// internal/frontend) and the HTTP servers (listen.portal, listen.http,
// listen.auth_http, through httpFront) alike. Serve returns an error
// isClosed knows after Shutdown or Close.
type frontServer interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
}

// frontListener is one running listener and the server behind it.
type frontListener struct {
	key string // listen.<key>
	ln  net.Listener
	srv frontServer
	// reconfigure applies a reloaded configuration to srv; nil when it
	// has nothing to apply.
	reconfigure func(cfg *config.Config, ups *upstreams)
	// closeGrace, when set, keeps the listener out of the drain
	// (Shutdown): it answers until Close, which then gives its requests
	// that long before closing them.
	closeGrace time.Duration
	done       chan struct{}
}

// built is what a listenerSpec's build returns.
type built struct {
	srv frontServer
	// serve runs srv on the listener: srv.Serve, or ServeTLS for implicit
	// TLS.
	serve       func(net.Listener) error
	reconfigure func(cfg *config.Config, ups *upstreams)
	closeGrace  time.Duration
}

// listenerSpec says how to open and build the server of one listener key.
type listenerSpec struct {
	key  string
	addr func(*config.Config) string
	// proxy takes the client's address from PROXY headers of
	// listen.proxy_protocol.trusted peers (d.proxyProtocol).
	proxy bool
	// listen opens the listener; nil means TCP on addr.
	listen func(d *Daemon, cfg *config.Config, addr string) (net.Listener, error)
	build  func(d *Daemon, cfg *config.Config, ups *upstreams) (built, error)
}

// upstreams are the configured upstream servers; nil when not configured.
type upstreams struct {
	IMAP, SMTP, LDAP *upstream.Config
}

// byProtocol is the upstreams as the login service hands them out
// (auth.Runtime.Upstreams): by policy protocol, the unset ones left out.
func (u *upstreams) byProtocol() map[string]*upstream.Config {
	m := make(map[string]*upstream.Config, 3)
	for p, c := range map[string]*upstream.Config{policy.IMAP: u.IMAP, policy.SMTP: u.SMTP, policy.LDAP: u.LDAP} {
		if c != nil {
			m[p] = c
		}
	}
	return m
}

func buildUpstreams(cfg *config.Config, log *slog.Logger, obs oauth.Observer, caches *tokenCaches) (*upstreams, error) {
	dial := cfg.Limits.DialTimeout.Std()
	var u upstreams
	var err error
	var errs []error
	if u.IMAP, err = mailUpstream(cfg.Upstream.IMAP, dial, log, "upstream.imap", obs, caches); err != nil {
		errs = append(errs, err)
	}
	if u.SMTP, err = mailUpstream(cfg.Upstream.SMTP, dial, log, "upstream.smtp", obs, caches); err != nil {
		errs = append(errs, err)
	}
	if u.LDAP, err = LDAPUpstream(cfg.Upstream.LDAP, dial, log); err != nil {
		errs = append(errs, err)
	}
	return &u, errors.Join(errs...)
}

// startListeners opens, in listenerSpecs order, every configured listener
// and serves each on a goroutine of its own.
func (d *Daemon) startListeners(cfg *config.Config, ups *upstreams) error {
	for _, spec := range d.listenerSpecs() {
		addr := spec.addr(cfg)
		if addr == "" {
			continue
		}
		b, err := spec.build(d, cfg, ups)
		if err != nil {
			return fmt.Errorf("listen.%s: %w", spec.key, err)
		}
		var ln net.Listener
		if spec.listen != nil {
			ln, err = spec.listen(d, cfg, addr)
		} else {
			ln, err = net.Listen("tcp", addr)
		}
		if err != nil {
			return fmt.Errorf("listen.%s: %w", spec.key, err)
		}
		if spec.proxy {
			ln = d.proxyProtocol(cfg, ln)
		}
		f := &frontListener{key: spec.key, ln: ln, srv: b.srv, reconfigure: b.reconfigure,
			closeGrace: b.closeGrace, done: make(chan struct{})}
		d.fronts = append(d.fronts, f)
		go func() {
			defer close(f.done)
			if err := b.serve(ln); err != nil && !isClosed(err) {
				d.log.Error("listener stopped", "listener", f.key, "err", err)
			}
		}()
	}
	return nil
}

// shutdownListeners drains every listener but those kept until Close,
// all at once, until ctx is done.
func (d *Daemon) shutdownListeners(ctx context.Context) {
	var wg sync.WaitGroup
	for _, f := range d.fronts {
		if f.closeGrace == 0 {
			wg.Go(func() { _ = f.srv.Shutdown(ctx) })
		}
	}
	wg.Wait()
}

// closeListeners closes every listener in reverse start order and waits
// for its Serve to return.
func (d *Daemon) closeListeners() {
	for _, f := range slices.Backward(d.fronts) {
		if f.closeGrace > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), f.closeGrace)
			_ = f.srv.Shutdown(ctx)
			cancel()
		}
		_ = f.srv.Close()
		<-f.done
	}
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

// httpFront adapts an http.Server to frontServer.
type httpFront struct{ *http.Server }

func (h httpFront) Serve(ln net.Listener) error { return closedErr(h.Server.Serve(ln)) }

// ServeTLS serves HTTPS with the certificate of TLSConfig.
func (h httpFront) ServeTLS(ln net.Listener) error { return closedErr(h.Server.ServeTLS(ln, "", "")) }

// closedErr maps http.ErrServerClosed to the front-ends' ErrServerClosed.
func closedErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return frontend.ErrServerClosed
	}
	return err
}

// isClosed reports whether a Serve error only says the server was closed.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, frontend.ErrServerClosed)
}
