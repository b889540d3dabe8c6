package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/legate-proxy/legate/internal/admin"
	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/connlimit"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/decision"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/metrics"
	"github.com/legate-proxy/legate/internal/portal"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/throttle"
	"github.com/legate-proxy/legate/store"
)

// Daemon is a running Legate.
type Daemon struct {
	log      *slog.Logger
	rt       atomic.Pointer[runtime] // what a reload changes, one value (runtime.go)
	store    store.Store
	signOuts store.SignOuts // the portal's shared sign-outs (store/etcd); nil with bbolt
	tokens   *tokenCaches   // oauth2 token caches, kept across reloads
	auth     *auth.Service
	registry *session.Registry
	limiter  *connlimit.Limiter
	local    *control.Service
	admin    *admin.Server
	decision *decision.Server // listen.decision: legate checkpassword
	cert     *certHolder
	throttle *throttle.Throttle
	fronts   []*frontListener // every listener, in start order (listenerSpecs)
	portal   *portal.Portal   // nil without listen.portal
	// operations (http.go): metrics, readiness state.
	metrics  *metrics.Metrics
	draining atomic.Bool

	mu sync.Mutex // serialises Reload

	// the session sweep (sweep.go)
	kickSweep chan struct{}
	stopSweep chan struct{}
	sweepDone sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Check builds everything a configuration needs except the store and the
// listeners: secrets files, certificates, CA files, the directory; and checks
// the storage without taking its lock (key file existence and mode, the
// database directory, etcd secrets) and the portal's secret files. It is what
// `legate check` runs after loading the file.
func Check(_ context.Context, cfg *config.Config) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var errs []error
	if cfg.TLS.Enabled() {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
		}
	}
	if _, err := BuildDirectory(cfg); err != nil {
		errs = append(errs, err)
	}
	if _, err := buildUpstreams(cfg, log, nil, nil); err != nil {
		errs = append(errs, err)
	}
	if err := checkStorage(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := checkPortalSecrets(cfg); err != nil {
		errs = append(errs, err)
	}
	if cfg.Listen.AuthHTTP != "" {
		if _, err := config.ReadSecretFile(cfg.AuthHTTP.SecretFile); err != nil {
			errs = append(errs, fmt.Errorf("auth_http.secret_file: %w", err))
		}
	}
	if g := cfg.Decision.SocketGroup; cfg.Listen.Decision != "" && g != "" {
		if _, err := user.LookupGroup(g); err != nil {
			errs = append(errs, fmt.Errorf("decision.socket_group: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Start opens the store and starts every configured listener. On error,
// whatever started is stopped again.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (d *Daemon, err error) {
	d = &Daemon{log: log, registry: session.New(), tokens: &tokenCaches{},
		kickSweep: make(chan struct{}, 1), stopSweep: make(chan struct{})}
	d.rt.Store(&runtime{cfg: cfg})
	defer func() {
		if err != nil {
			d.Close()
			d = nil
		}
	}()
	if err := errors.Join(cfg.CheckSecrets(), cfg.CheckFiles()); err != nil { // with file:line
		return d, err
	}
	if cfg.TLS.Enabled() {
		if d.cert, err = newCertHolder(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return d, err
		}
	}
	dir, err := BuildDirectory(cfg)
	if err != nil {
		return d, err
	}
	ups, err := buildUpstreams(cfg, log, tokenObserver{d}, d.tokens)
	if err != nil {
		return d, err
	}
	if d.store, err = OpenStore(ctx, cfg, log); err != nil {
		return d, err
	}
	// etcd: a revocation on any instance closes the sessions here too.
	if n, ok := d.store.(store.RevocationNotifier); ok {
		n.OnRevoke(func(ids []string, _ string) { d.registry.KillAppPasswords(ids...) })
	}
	rt := &runtime{cfg: cfg, auth: auth.Runtime{Policy: PolicyOf(cfg), Directory: dir, Upstreams: ups.byProtocol()}, ups: ups}
	d.rt.Store(rt)
	d.metrics = d.newMetrics()                            // operations
	d.signOuts, _ = d.store.(store.SignOuts)              // before InstrumentStore wraps it
	d.store = metrics.InstrumentStore(d.store, d.metrics) // operations
	d.limiter = connlimit.New(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerIP)
	d.throttle = newThrottle(cfg)
	d.auth = auth.New(auth.Options{Store: d.store, Directory: dir, Policy: rt.auth.Policy,
		Throttle: d.throttle, Logger: log, Observe: d.metrics.Observe}) // operations: Observe
	d.auth.SetRuntime(rt.auth) // with the upstreams: a login's Result names its session's
	d.registry.SetHooks(d.sessionHooks())
	d.sweepDone.Add(1)
	go d.sweeper()
	d.local = &control.Service{Store: d.store, Directory: d.auth.Directory, Policy: d.auth.Policy, Explainer: d.auth, Registry: d.registry,
		MaxPerUser:    func() int { return d.config().Policy.MaxAppPasswordsPerUser },
		UpstreamLogin: func(p, n string, a []string) string { return d.config().UpstreamLogin(p, n, a) }}
	if cfg.Listen.Admin != "" {
		if d.admin, err = admin.Listen(cfg.Listen.Admin, d.local, log); err != nil {
			return d, err
		}
	}
	if cfg.Listen.Decision != "" {
		if d.decision, err = decision.Listen(decision.Options{Path: cfg.Listen.Decision,
			Group: cfg.Decision.SocketGroup, Login: d.auth, Logger: log}); err != nil {
			return d, err
		}
	}
	if err := d.startListeners(cfg, ups); err != nil {
		return d, err
	}
	log.Info("legate started", "config", cfg.File(), "listeners", d.listenerNames())
	return d, nil
}

// Auth returns the login service.
func (d *Daemon) Auth() *auth.Service { return d.auth }

// Registry returns the live-session registry.
func (d *Daemon) Registry() *session.Registry { return d.registry }

// Control returns the control operations.
func (d *Daemon) Control() *control.Service { return d.local }

// Addr returns the bound address of a listener by its config key (imap,
// imaps, submission, ...), or nil.
func (d *Daemon) Addr(key string) net.Addr {
	for _, f := range d.fronts {
		if f.key == key {
			return f.ln.Addr()
		}
	}
	return nil
}

// Reload applies a new configuration: policy, directory, limits, throttle,
// TLS certificate and upstream settings take effect for new logins; sessions
// now refused by policy are closed (the sweep runs at once). Everything is
// built and checked first (buildRuntime) and then published as one value
// (publish): a refused reload changes nothing. Listener addresses are not
// changed by a reload (restart for that).
func (d *Daemon) Reload(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := errors.Join(cfg.CheckSecrets(), cfg.CheckFiles()); err != nil { // with file:line
		return err
	}
	var keys []string
	for _, f := range d.fronts {
		keys = append(keys, f.key)
	}
	rt, err := d.buildRuntime(cfg, keys)
	if err != nil {
		return err
	}
	old := d.auth.Directory()
	d.publish(rt)
	closeDirectory(old)
	d.reloadPortal(cfg)
	d.log.Info("configuration reloaded", "config", cfg.File())
	d.kickSweeper() // sessions the new configuration refuses are closed now
	return nil
}

// ReloadFile loads path and applies it with Reload, counting the result in
// legate_config_reloads_total; a bad file is refused, the old configuration
// kept. (operations)
func (d *Daemon) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err == nil {
		err = d.Reload(cfg)
	}
	d.metrics.ConfigReload(err)
	return err
}

// Shutdown drains: stop accepting, let sessions finish up to ctx, close the
// rest, flush the store.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.draining.Store(true) // operations: /readyz answers 503 while draining
	// Sessions still open when the grace ends are closed by the front-ends;
	// log and audit them first (the front-ends see the end of grace only
	// after that).
	grace, endGrace := context.WithCancel(context.Background())
	defer endGrace()
	stop, logged := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(logged)
		select {
		case <-ctx.Done():
			d.auditDrained()
			endGrace()
		case <-stop:
		}
	}()
	d.shutdownListeners(grace)
	close(stop)
	<-logged
	return d.Close()
}

// Close stops everything at once, in reverse order of Start.
// A second Close (or Shutdown) does nothing and returns the first result.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.close() })
	return d.closeErr
}

func (d *Daemon) close() error {
	d.closeListeners() // listen.http started last, stops first
	if d.admin != nil {
		d.admin.Close()
	}
	if d.stopSweep != nil && d.auth != nil {
		close(d.stopSweep)
		d.sweepDone.Wait()
	}
	if d.decision != nil {
		d.decision.Close()
	}
	if d.auth != nil {
		closeDirectory(d.auth.Directory())
	}
	if d.store != nil {
		return d.store.Close()
	}
	return nil
}

// ServeOptions configure Serve.
type ServeOptions struct {
	ConfigPath string
	// Stderr receives the logs; nil means os.Stderr.
	Stderr io.Writer
	// Started, if set, is called once the daemon runs (tests).
	Started func(*Daemon)
}

// Serve runs `legate serve` until ctx ends or SIGTERM/SIGINT: SIGHUP or a
// change of the config file reloads it (a bad file is refused, the old
// configuration kept).
func Serve(ctx context.Context, o ServeOptions) error {
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	log := NewLogger(cfg, o.Stderr)
	for _, w := range cfg.Warnings() { // what `legate check` warns about, in the journal too
		log.Warn("configuration warning", "problem", w.Error())
	}
	// Catch signals before anything starts: a SIGTERM that arrives while
	// listeners open (or just after "legate started") must drain, not kill.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	d, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	if o.Started != nil {
		o.Started(d)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changed := watchFile(watchCtx, o.ConfigPath, 2*time.Second)
	reload := func(why string) {
		if err := d.ReloadFile(o.ConfigPath); err != nil { // operations: counted reload
			log.Error("reload refused, keeping the old configuration", "trigger", why, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return d.drain(log)
		case <-changed:
			reload("file changed")
		case s := <-sigs:
			if s == syscall.SIGHUP {
				reload("SIGHUP")
				continue
			}
			log.Info("draining", "signal", s.String(), "grace", d.config().Limits.ShutdownGrace.Std())
			return d.drain(log)
		}
	}
}

func (d *Daemon) drain(log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.config().Limits.ShutdownGrace.Std())
	defer cancel()
	err := d.Shutdown(ctx)
	log.Info("stopped")
	return err
}

// watchFile signals when path's modification time or size changes, polled
// every interval (debounced: one signal per change).
func watchFile(ctx context.Context, path string, interval time.Duration) <-chan struct{} {
	ch := make(chan struct{}, 1)
	stat := func() (time.Time, int64) {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}, -1
		}
		return fi.ModTime(), fi.Size()
	}
	go func() {
		mt, sz := stat()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m, s := stat()
				if s >= 0 && (!m.Equal(mt) || s != sz) {
					mt, sz = m, s
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return ch
}

// closeDirectory releases a directory's connections, if it holds any.
func closeDirectory(dir directory.Directory) {
	if c, ok := dir.(io.Closer); ok {
		c.Close()
	}
}
