package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/legate-proxy/legate/store"
)

// registerAuditStats exposes the store's audit-queue counters: records
// dropped (written to the log instead, e.g. while the disk is full),
// failed flushes and records pruned by audit.retain.
func registerAuditStats(reg *prometheus.Registry, stats func() store.BatchStats) {
	for _, c := range []struct {
		name, help string
		get        func(store.BatchStats) uint64
	}{
		{"legate_audit_dropped_total", "Audit records the store could not keep (queue full while flushes failed); each was logged instead.",
			func(s store.BatchStats) uint64 { return s.Dropped }},
		{"legate_audit_flush_failures_total", "Failed writes of queued last uses and audit records (full disk, etcd unreachable).",
			func(s store.BatchStats) uint64 { return s.FlushFailures }},
		{"legate_audit_pruned_total", "Audit records removed by audit.retain.",
			func(s store.BatchStats) uint64 { return s.Pruned }},
	} {
		get := c.get
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(get(stats())) }))
	}
}
