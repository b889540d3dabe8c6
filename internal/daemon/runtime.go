package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/upstream"
)

// runtime is everything a configuration sets that a reload may change,
// as one immutable value (issue 14.5): the configuration; the policy,
// directory and upstreams every login reads (auth.Runtime, which the login
// service publishes through one atomic pointer and each login loads once:
// the decision and the upstream its session goes to, login.Result.Upstream,
// come from the same snapshot); the TLS certificate. buildRuntime builds and checks all of it
// before anything is published, so a bad reload changes nothing; publish
// then swaps it in, and the daemon reads it through d.rt.
type runtime struct {
	cfg  *config.Config
	auth auth.Runtime
	ups  *upstreams
	cert *tls.Certificate // nil without tls.*
}

// buildRuntime builds and validates the runtime of cfg without side
// effects on the running daemon. listeners are the keys of the running
// protocol listeners: each needs its upstream (a reload cannot remove it).
func (d *Daemon) buildRuntime(cfg *config.Config, listeners []string) (*runtime, error) {
	rt := &runtime{cfg: cfg, auth: auth.Runtime{Policy: PolicyOf(cfg)}}
	if cfg.TLS.Enabled() {
		c, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		rt.cert = &c
	}
	ups, err := buildUpstreams(cfg, d.log, tokenObserver{d}, d.tokens)
	if err != nil {
		return nil, err
	}
	rt.ups = ups
	rt.auth.Upstreams = ups.byProtocol()
	var errs []error
	for _, key := range listeners {
		need := map[string]*upstream.Config{"imap": ups.IMAP, "imaps": ups.IMAP, "submission": ups.SMTP,
			"submissions": ups.SMTP, "ldap": ups.LDAP, "ldaps": ups.LDAP}
		if u, ok := need[key]; ok && u == nil {
			errs = append(errs, fmt.Errorf("listen.%s: needs upstream.%s", key, protoOf(key)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	dir, err := BuildDirectory(cfg) // last: the only part holding resources
	if err != nil {
		return nil, err
	}
	rt.auth.Directory = dir
	return rt, nil
}

func protoOf(key string) string {
	switch key {
	case "imap", "imaps":
		return "imap"
	case "submission", "submissions":
		return "smtp"
	}
	return "ldap"
}

// publish swaps rt in. What a login reads — policy, directory and the
// upstream its session goes to — is one value behind one atomic pointer
// (auth.Service.SetRuntime); then come what new connections read: limits,
// throttle, certificate, each front-end's options (timeouts; their
// upstream only as a fallback). It cannot fail (buildRuntime checked
// everything).
func (d *Daemon) publish(rt *runtime) {
	d.rt.Store(rt)
	d.auth.SetRuntime(rt.auth)
	d.limiter.SetLimits(rt.cfg.Limits.MaxConnections, rt.cfg.Limits.MaxConnectionsPerIP)
	d.throttle.SetLimits(throttleLimits(rt.cfg))
	if d.cert != nil && rt.cert != nil {
		d.cert.cert.Store(rt.cert)
	}
	d.reconfigureFrontEnds(rt.cfg, rt.ups)
	d.tokens.retain(rt.ups.IMAP, rt.ups.SMTP)
}

// config returns the configuration in force.
func (d *Daemon) config() *config.Config { return d.rt.Load().cfg }
