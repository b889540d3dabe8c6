package metrics

import (
	"context"
	"time"

	"github.com/legate-proxy/legate/store"
)

// Store operation names, the values of legate_store_op_seconds{op}.
var storeOps = []string{"create", "list", "users", "verify", "revoke", "audit_log", "verify_audit", "flush"}

// InstrumentStore returns s with every blocking operation timed into
// legate_store_op_seconds{op}: create, list, users, verify, revoke,
// audit_log, verify_audit, flush. RecordUse and Audit only queue and are not
// timed. With a nil m, s is returned as it is.
func InstrumentStore(s store.Store, m *Metrics) store.Store {
	if m == nil {
		return s
	}
	return &timedStore{Store: s, m: m}
}

type timedStore struct {
	store.Store
	m *Metrics
}

var _ store.Store = (*timedStore)(nil)

func (t *timedStore) since(op string, start time.Time) { t.m.StoreOp(op, time.Since(start)) }

func (t *timedStore) Create(ctx context.Context, req store.CreateRequest) (store.AppPassword, string, error) {
	defer t.since("create", time.Now())
	return t.Store.Create(ctx, req)
}

func (t *timedStore) List(ctx context.Context, user string) ([]store.AppPassword, error) {
	defer t.since("list", time.Now())
	return t.Store.List(ctx, user)
}

func (t *timedStore) Users(ctx context.Context) ([]string, error) {
	defer t.since("users", time.Now())
	return t.Store.Users(ctx)
}

func (t *timedStore) Verify(ctx context.Context, user, secret string) (store.AppPassword, error) {
	defer t.since("verify", time.Now())
	return t.Store.Verify(ctx, user, secret)
}

func (t *timedStore) Revoke(ctx context.Context, user string, sel store.Selector) ([]store.AppPassword, error) {
	defer t.since("revoke", time.Now())
	return t.Store.Revoke(ctx, user, sel)
}

func (t *timedStore) AuditLog(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	defer t.since("audit_log", time.Now())
	return t.Store.AuditLog(ctx, q)
}

func (t *timedStore) VerifyAudit(ctx context.Context) (store.VerifyResult, error) {
	defer t.since("verify_audit", time.Now())
	return t.Store.VerifyAudit(ctx)
}

func (t *timedStore) Flush(ctx context.Context) error {
	defer t.since("flush", time.Now())
	return t.Store.Flush(ctx)
}

// CountAppPasswords counts every stored app password (Users, then List per
// user); it is meant for Options.AppPasswords.
func CountAppPasswords(s store.Store) func(ctx context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		users, err := s.Users(ctx)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, u := range users {
			aps, err := s.List(ctx, u)
			if err != nil {
				return 0, err
			}
			n += len(aps)
		}
		return n, nil
	}
}
