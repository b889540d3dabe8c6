package frontend

import (
	"context"
	"net/netip"
	"time"

	"github.com/legate-proxy/legate/internal/session"
)

// Metrics receives the relay and upstream figures of a front-end; nil
// means none. *metrics.Metrics (internal/metrics) implements it. Each
// protocol re-exports it (`type Metrics = frontend.Metrics`) for its
// Options.
type Metrics interface {
	RelayedBytes(proto, dir string, n int)
	UpstreamError(proto string)
	UpstreamConnect(proto string, d time.Duration)
}

// Relay directions passed to Metrics.RelayedBytes.
const (
	DirToUpstream = "to_upstream"
	DirToClient   = "to_client"
)

// OrNoMetrics returns m, or a Metrics that records nothing when m is nil.
func OrNoMetrics(m Metrics) Metrics {
	if m != nil {
		return m
	}
	return noMetrics{}
}

type noMetrics struct{}

func (noMetrics) RelayedBytes(string, string, int)      {}
func (noMetrics) UpstreamError(string)                  {}
func (noMetrics) UpstreamConnect(string, time.Duration) {}

// Or returns v when it is positive, else def: an Options field's zero
// value means its default.
func Or[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// SessionRegistry is the live-session registry as the front-ends use it
// (*session.Registry implements it): register a session after the login,
// then confirm it once the upstream has accepted it.
type SessionRegistry interface {
	Register(info session.Info, closeFn func()) (id string, done func())
	Confirm(ctx context.Context, id string) bool
}

// ConnLimiter bounds connections (*connlimit.Limiter implements it).
type ConnLimiter interface {
	Acquire(ip netip.Addr) (release func(), ok bool)
}
