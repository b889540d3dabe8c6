package config

import "time"

// Audit bounds the audit log (docs/contract.md §10).
type Audit struct {
	// Retain is how long audit records are kept; older ones are pruned
	// (hourly) and the chain stays verifiable from an anchor. Default
	// 400d; 0 keeps every record.
	Retain Duration `yaml:"retain"`
}

// DefaultAuditRetain is audit.retain's default.
const DefaultAuditRetain = Duration(400 * 24 * time.Hour)

// minAuditRetain keeps a mistyped unit (retain: 400s) from emptying the log.
const minAuditRetain = Duration(24 * time.Hour)

func (v *validator) audit() {
	r := v.c.Audit.Retain
	if r != 0 && r < minAuditRetain {
		v.add("audit.retain", "%s is shorter than 1d (0 keeps every record)", r)
	}
}
