// Package metrics defines Legate's Prometheus metrics (docs/contract.md §6) on a registry
// of its own: login decisions, live sessions, relayed bytes, upstream errors
// and connect times, throttling, store operation times, stored app passwords,
// configuration reloads and build information.
//
// No label ever carries a user name, an IP address or a secret: labels are
// the protocol, the outcome and rule of a decision (fixed sets from package
// policy), a relay direction, a store operation name or a reload result.
// Values outside the known sets are reported as "other", so a caller can
// never grow the number of series.
//
// Every method is safe on a nil *Metrics and does nothing, so front-ends may
// hold a nil pointer when metrics are off.
package metrics

import (
	"context"
	"github.com/legate-proxy/legate/internal/login"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

// Relay directions for RelayedBytes.
const (
	ToUpstream = "to_upstream" // bytes the client sent, passed to the upstream
	ToClient   = "to_client"   // bytes the upstream sent, passed to the client
)

// Other replaces a label value outside its known set.
const Other = "other"

// Options configure New.
type Options struct {
	// Sessions returns the number of live sessions of a protocol (imap,
	// smtp, ldap); nil reports zero.
	Sessions func(protocol string) int
	// AppPasswords counts the stored app passwords; it is called at scrape
	// time at most once per AppPasswordsTTL. Nil leaves legate_app_passwords
	// out.
	AppPasswords func(ctx context.Context) (int, error)
	// AppPasswordsTTL is how long a count is reused; zero means 30s.
	AppPasswordsTTL time.Duration
	// AuditStats reports what the store's audit queue could not keep
	// (store.AuditStats); nil leaves the legate_audit_* counters out.
	AuditStats func() store.BatchStats
	// Version is the build_info version label; empty means the main
	// module's version from the build information.
	Version string
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time
}

// Metrics holds every Legate metric and the registry they live in.
type Metrics struct {
	reg *prometheus.Registry

	logins          *prometheus.CounterVec
	decision        *prometheus.HistogramVec
	relayed         *prometheus.CounterVec
	upstreamErrors  *prometheus.CounterVec
	upstreamConnect *prometheus.HistogramVec
	throttled       *prometheus.CounterVec
	storeOp         *prometheus.HistogramVec
	reloads         *prometheus.CounterVec
	tokens          *tokenMetrics
}

// New builds the metrics and registers them, with the Go runtime and process
// collectors, on a new registry.
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "legate_logins_total",
		Help: "Login decisions by protocol, outcome (allow, bad_credentials, refused, expired, tls_required, throttled, unavailable) and deciding rule.",
	}, []string{"protocol", "outcome", "rule"})
	m.decision = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "legate_login_decision_seconds",
		Help:    "Time to decide a login, failure delay included.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"protocol"})
	m.relayed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "legate_relayed_bytes_total",
		Help: "Bytes relayed between clients and upstreams, by protocol and direction (to_upstream, to_client).",
	}, []string{"protocol", "direction"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "legate_upstream_errors_total",
		Help: "Failures to reach or log in to an upstream server, by protocol.",
	}, []string{"protocol"})
	m.upstreamConnect = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "legate_upstream_connect_seconds",
		Help:    "Time to connect and log in to an upstream server, by protocol.",
		Buckets: prometheus.DefBuckets,
	}, []string{"protocol"})
	m.throttled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "legate_throttled_total",
		Help: "Logins refused by the failure throttle, by protocol.",
	}, []string{"protocol"})
	m.storeOp = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "legate_store_op_seconds",
		Help:    "Duration of app-password store operations, by operation.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs .. 6.5s
	}, []string{"op"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "legate_config_reloads_total",
		Help: "Configuration reloads by result (ok, error).",
	}, []string{"result"})
	m.tokens = newTokenMetrics(m.reg)
	m.reg.MustRegister(m.logins, m.decision, m.relayed, m.upstreamErrors, m.upstreamConnect,
		m.throttled, m.storeOp, m.reloads)

	sessions := o.Sessions
	if sessions == nil {
		sessions = func(string) int { return 0 }
	}
	for _, p := range policy.Protocols() {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "legate_sessions",
			Help:        "Live proxied sessions, by protocol.",
			ConstLabels: prometheus.Labels{"protocol": p},
		}, func() float64 { return float64(sessions(p)) }))
		// Series that alerts watch exist from the start, at zero.
		m.throttled.WithLabelValues(p)
		m.upstreamErrors.WithLabelValues(p)
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")

	if o.AppPasswords != nil {
		c := newCachedCount(o.AppPasswords, o.AppPasswordsTTL, o.Now)
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "legate_app_passwords",
			Help: "App passwords in the store (counted at most every 30s).",
		}, c.get))
	}

	if o.AuditStats != nil {
		registerAuditStats(m.reg, o.AuditStats)
	}

	version, revision := buildVersion()
	if o.Version != "" {
		version = o.Version
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "legate_build_info",
		Help: "Always 1; the labels describe the running build.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision,
			"goversion": goVersion()},
	})
	info.Set(1)
	m.reg.MustRegister(info,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry the metrics live in (for tests and for
// registering more collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe counts one login decision; its signature matches
// auth.Options.Observe.
func (m *Metrics) Observe(req login.Request, res login.Result, took time.Duration) {
	if m == nil {
		return
	}
	proto := protocol(req.Protocol)
	m.logins.WithLabelValues(proto, res.Outcome.String(), rule(res.Rule)).Inc()
	m.decision.WithLabelValues(proto).Observe(took.Seconds())
	if res.Outcome == policy.Throttled {
		m.throttled.WithLabelValues(proto).Inc()
	}
}

// RelayedBytes adds n bytes relayed for a protocol in direction dir
// (ToUpstream or ToClient).
func (m *Metrics) RelayedBytes(proto, dir string, n int) {
	if m == nil || n <= 0 {
		return
	}
	if dir != ToUpstream && dir != ToClient {
		dir = Other
	}
	m.relayed.WithLabelValues(protocol(proto), dir).Add(float64(n))
}

// UpstreamError counts one failure to reach or log in to the upstream of a
// protocol.
func (m *Metrics) UpstreamError(proto string) {
	if m == nil {
		return
	}
	m.upstreamErrors.WithLabelValues(protocol(proto)).Inc()
}

// UpstreamConnect records the time an upstream connection (and login) took.
func (m *Metrics) UpstreamConnect(proto string, d time.Duration) {
	if m == nil {
		return
	}
	m.upstreamConnect.WithLabelValues(protocol(proto)).Observe(d.Seconds())
}

// StoreOp records the duration of one store operation (see InstrumentStore
// for the names).
func (m *Metrics) StoreOp(op string, d time.Duration) {
	if m == nil {
		return
	}
	if !slices.Contains(storeOps, op) {
		op = Other
	}
	m.storeOp.WithLabelValues(op).Observe(d.Seconds())
}

// ConfigReload counts a configuration reload: ok when err is nil.
func (m *Metrics) ConfigReload(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reloads.WithLabelValues(result).Inc()
}

func protocol(p string) string {
	if policy.ValidProtocol(p) {
		return p
	}
	return Other
}

// knownRules are the rule label values: every policy rule plus the login
// service's "unavailable".
var knownRules = []policy.Rule{
	policy.RuleTLSRequired, policy.RuleThrottled, policy.RuleBadCredentials, policy.RuleLegacyBlocked,
	policy.RuleUserBlocked, policy.RuleGroupBlocked, policy.RuleAdmin, policy.RuleDisabled,
	policy.RuleProtocolOff, policy.RuleUserProtocolOff, policy.RuleScope, policy.RuleNetwork,
	policy.RuleExpired, policy.RulePasswordChanged, policy.RuleUnused, policy.RuleAllowAppPassword,
	policy.RuleAllowPrimary, "unavailable",
}

func rule(r policy.Rule) string {
	if slices.Contains(knownRules, r) {
		return string(r)
	}
	return Other
}

func buildVersion() (version, revision string) {
	version = "(devel)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, ""
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return version, revision
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return ""
}

// cachedCount calls fn at most once per ttl; on error it keeps the last
// value and asks again at the next scrape.
type cachedCount struct {
	fn  func(ctx context.Context) (int, error)
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	at    time.Time
	value float64
}

func newCachedCount(fn func(context.Context) (int, error), ttl time.Duration, now func() time.Time) *cachedCount {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &cachedCount{fn: fn, ttl: ttl, now: now}
}

func (c *cachedCount) get() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.ttl {
		return c.value
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.fn(ctx)
	if err != nil {
		return c.value
	}
	c.at, c.value = c.now(), float64(n)
	return c.value
}
