package metrics

import (
	"testing"

	"github.com/legate-proxy/legate/store"
)

func TestAuditStatsCounters(t *testing.T) {
	st := store.BatchStats{Dropped: 7, FlushFailures: 3, Pruned: 1000}
	m := New(Options{AuditStats: func() store.BatchStats { return st }})
	text := scrape(t, m)
	for series, want := range map[string]float64{
		"legate_audit_dropped_total": 7, "legate_audit_flush_failures_total": 3, "legate_audit_pruned_total": 1000,
	} {
		if got := value(text, series); got != want {
			t.Errorf("%s: got %v, want %v", series, got, want)
		}
	}
}
