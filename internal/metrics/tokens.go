package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tokenSources are the token sources' names (config keys), the only values
// of the source label.
var tokenSources = []string{"upstream.imap", "upstream.smtp"}

// tokenMetrics cover the OAuth 2.0 token endpoints of oauth2 upstreams.
type tokenMetrics struct {
	fetches *prometheus.CounterVec
	latency *prometheus.HistogramVec
	hits    *prometheus.CounterVec
}

func newTokenMetrics(reg *prometheus.Registry) *tokenMetrics {
	t := &tokenMetrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "legate_oauth_token_fetches_total",
			Help: "Requests to an OAuth 2.0 token endpoint for upstream logins, by source (upstream.imap, upstream.smtp) and result (ok, error).",
		}, []string{"source", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "legate_oauth_token_fetch_seconds",
			Help:    "Time of a request to an OAuth 2.0 token endpoint, by source.",
			Buckets: prometheus.DefBuckets,
		}, []string{"source"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "legate_oauth_token_cache_hits_total",
			Help: "Upstream logins served by a cached OAuth 2.0 token, by source.",
		}, []string{"source"}),
	}
	reg.MustRegister(t.fetches, t.latency, t.hits)
	return t
}

// TokenFetched implements oauth.Observer.
func (m *Metrics) TokenFetched(source string, took time.Duration, err error) {
	if m == nil {
		return
	}
	source = known(source, tokenSources)
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.tokens.fetches.WithLabelValues(source, result).Inc()
	m.tokens.latency.WithLabelValues(source).Observe(took.Seconds())
}

// TokenCacheHit implements oauth.Observer.
func (m *Metrics) TokenCacheHit(source string) {
	if m == nil {
		return
	}
	m.tokens.hits.WithLabelValues(known(source, tokenSources)).Inc()
}

// known returns v when it is one of set, else Other.
func known(v string, set []string) string {
	for _, s := range set {
		if s == v {
			return v
		}
	}
	return Other
}
