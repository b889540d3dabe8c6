package daemon

import (
	"errors"
	"net"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/proxyproto"
	"github.com/legate-proxy/legate/proxy/imap"
	"github.com/legate-proxy/legate/proxy/ldap"
	"github.com/legate-proxy/legate/proxy/smtp"
)

// proxyProtocol wraps a front-end listener so that it takes the client's
// address from the PROXY headers of listen.proxy_protocol.trusted peers;
// without trusted peers it returns ln.
func (d *Daemon) proxyProtocol(cfg *config.Config, ln net.Listener) net.Listener {
	pp := cfg.Listen.ProxyProtocol
	if len(pp.Trusted) == 0 {
		return ln
	}
	return proxyproto.Listen(ln, proxyproto.Options{Trusted: pp.Trusted, Timeout: pp.Timeout.Std(), Logger: d.log})
}

// listenerSpecs lists every listener in start order; Close stops them in
// reverse order. The PROXY protocol (proxy: true) is applied in one place,
// startListeners.
func (d *Daemon) listenerSpecs() []listenerSpec {
	return []listenerSpec{
		{key: "auth_http", addr: func(c *config.Config) string { return c.Listen.AuthHTTP }, listen: listenAuthHTTP, build: buildAuthHTTP},
		{key: "imap", addr: func(c *config.Config) string { return c.Listen.IMAP }, proxy: true, build: buildIMAP(false)},
		{key: "imaps", addr: func(c *config.Config) string { return c.Listen.IMAPS }, proxy: true, build: buildIMAP(true)},
		{key: "submission", addr: func(c *config.Config) string { return c.Listen.Submission }, proxy: true, build: buildSMTP(false)},
		{key: "submissions", addr: func(c *config.Config) string { return c.Listen.Submissions }, proxy: true, build: buildSMTP(true)},
		{key: "ldap", addr: func(c *config.Config) string { return c.Listen.LDAP }, proxy: true, build: buildLDAP(false)},
		{key: "ldaps", addr: func(c *config.Config) string { return c.Listen.LDAPS }, proxy: true, build: buildLDAP(true)},
		{key: "portal", addr: func(c *config.Config) string { return c.Listen.Portal }, build: buildPortal, proxy: true},
		// operations: listen.http is started last and stopped first.
		{key: "http", addr: func(c *config.Config) string { return c.Listen.HTTP }, build: buildHTTP},
	}
}

// serveFunc picks Serve or, for implicit TLS, ServeTLS.
func serveFunc(implicit bool, srv interface {
	Serve(net.Listener) error
	ServeTLS(net.Listener) error
}) func(net.Listener) error {
	if implicit {
		return srv.ServeTLS
	}
	return srv.Serve
}

func (d *Daemon) imapOptions(cfg *config.Config, ups *upstreams) imap.Options {
	l := cfg.Limits
	return imap.Options{Auth: d.auth, Sessions: d.registry, Limiter: d.limiter, Upstream: ups.IMAP,
		TLS: d.cert.serverConfig(), Logger: d.log, Metrics: d.frontMetrics(),
		PreauthTimeout: l.PreauthTimeout.Std(), IdleTimeout: l.IdleTimeout.Std(),
		MaxLineLength: int(l.MaxLineLength.Int64()), MaxLiteralSize: int(l.MaxLiteralSize.Int64()),
		PassClientAddress: cfg.Upstream.IMAP.PassClientAddress}
}

func buildIMAP(implicit bool) func(d *Daemon, cfg *config.Config, ups *upstreams) (built, error) {
	return func(d *Daemon, cfg *config.Config, ups *upstreams) (built, error) {
		if ups.IMAP == nil {
			return built{}, errors.New("needs upstream.imap")
		}
		srv := imap.NewServer(d.imapOptions(cfg, ups))
		return built{srv: srv, serve: serveFunc(implicit, srv),
			reconfigure: func(c *config.Config, u *upstreams) { srv.SetOptions(d.imapOptions(c, u)) }}, nil
	}
}

func (d *Daemon) smtpOptions(cfg *config.Config, ups *upstreams) smtp.Options {
	l := cfg.Limits
	return smtp.Options{Auth: d.auth, Sessions: d.registry, Limiter: d.limiter, Upstream: ups.SMTP,
		TLS: d.cert.serverConfig(), Logger: d.log, Metrics: d.frontMetrics(),
		PreauthTimeout: l.PreauthTimeout.Std(), IdleTimeout: l.IdleTimeout.Std(),
		MaxMessageBytes: l.MaxMessageSize.Int64(), MaxRecipients: l.MaxRecipients, MaxLineLength: int(l.MaxLineLength.Int64()),
		AllowAnySender: !cfg.Policy.EnforceSender, AllowNullSender: cfg.Policy.AllowNullSender,
		NoClientAddress: !cfg.Upstream.SMTP.PassesClientAddress()}
}

func buildSMTP(implicit bool) func(d *Daemon, cfg *config.Config, ups *upstreams) (built, error) {
	return func(d *Daemon, cfg *config.Config, ups *upstreams) (built, error) {
		if ups.SMTP == nil {
			return built{}, errors.New("needs upstream.smtp")
		}
		srv := smtp.NewServer(d.smtpOptions(cfg, ups))
		return built{srv: srv, serve: serveFunc(implicit, srv),
			reconfigure: func(c *config.Config, u *upstreams) { srv.SetOptions(d.smtpOptions(c, u)) }}, nil
	}
}

func (d *Daemon) ldapOptions(cfg *config.Config, ups *upstreams) ldap.Options {
	l, u := cfg.Limits, cfg.Upstream.LDAP
	return ldap.Options{Auth: d.auth, Sessions: d.registry, Limiter: d.limiter, Upstream: ups.LDAP,
		TLS: d.cert.serverConfig(), Logger: d.log, Metrics: d.frontMetrics(),
		PreauthTimeout: l.PreauthTimeout.Std(), IdleTimeout: l.IdleTimeout.Std(),
		MaxPDUSize: int(l.MaxPDUSize.Int64()), PoolSize: u.PoolSize, AllowWrites: u.AllowWrites,
		Authz: u.Authz, SearchBases: u.SearchBases, Attributes: u.Attributes}
}

func buildLDAP(implicit bool) func(d *Daemon, cfg *config.Config, ups *upstreams) (built, error) {
	return func(d *Daemon, cfg *config.Config, ups *upstreams) (built, error) {
		if ups.LDAP == nil {
			return built{}, errors.New("needs upstream.ldap")
		}
		srv := ldap.NewServer(d.ldapOptions(cfg, ups))
		return built{srv: srv, serve: serveFunc(implicit, srv),
			reconfigure: func(c *config.Config, u *upstreams) { srv.SetOptions(d.ldapOptions(c, u)) }}, nil
	}
}

// frontMetrics returns the daemon's metrics with the method set of
// imap.Metrics, smtp.Metrics and ldap.Metrics: a nil interface, never a nil
// pointer inside one, when there are none.
func (d *Daemon) frontMetrics() interface {
	RelayedBytes(proto, dir string, n int)
	UpstreamError(proto string)
	UpstreamConnect(proto string, d time.Duration)
} {
	if d.metrics == nil {
		return nil
	}
	return d.metrics
}
