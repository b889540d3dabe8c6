// Package storetest is the conformance suite of store.Store: every backend
// (store/bolt, store/etcd) runs the same tests through Run, so they behave alike.
// Backend-specific tests (tampering with the bbolt file, etcd failures) stay
// with their backend.
package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/legate-proxy/legate/store"
)

// Harness opens stores of one backend for Run.
type Harness struct {
	// New returns a fresh, empty storage location: a temp directory, an
	// etcd key prefix.
	New func(t *testing.T) string
	// Open opens a store at loc whose background flush does not run during
	// the test (e.g. FlushInterval of an hour). Opening loc again after
	// Close sees what was written. Open registers a t.Cleanup that closes
	// the store (tolerating ErrClosed).
	Open func(t *testing.T, loc string) store.Store
	// Check, if set, checks backend invariants (index consistency) and is
	// called after the tests that write and revoke.
	Check func(t *testing.T, s store.Store)
}

// Run runs the whole suite against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"CreateListVerify", testCreateListVerify},
		{"CreateValidation", testCreateValidation},
		{"Limit", testLimit},
		{"NameTaken", testNameTaken},
		{"Revoke", testRevoke},
		{"ConcurrentCreatesStopAtLimit", testConcurrentCreates},
		{"Closed", testClosed},
		{"ContextCanceled", testContextCanceled},
		{"CreateRevokeImmediate", testCreateRevokeImmediate},
		{"VerifyReturnsCopy", testVerifyReturnsCopy},
		{"RecordUseFlushAndReopen", testRecordUseFlushAndReopen},
		{"CloseFlushes", testCloseFlushes},
		{"RecordUseOfRevokedIgnored", testRecordUseOfRevoked},
		{"AuditLogQuery", testAuditLogQuery},
		{"VerifyAuditEmptyAndAppend", testVerifyAuditAppend},
		{"AuditQueueOrder", testAuditOrder},
		{"ExportImport", testExportImport},
		{"AuditPrune", testAuditPrune},
		{"AuditSeq", testAuditSeq},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func (h Harness) open(t *testing.T) store.Store { return h.Open(t, h.New(t)) }

func (h Harness) check(t *testing.T, s store.Store) {
	t.Helper()
	if h.Check != nil {
		h.Check(t, s)
	}
}

func mustCreate(t testing.TB, s store.Store, user, name string) (store.AppPassword, string) {
	t.Helper()
	p, secret, err := s.Create(context.Background(), store.CreateRequest{User: user, Name: name})
	if err != nil {
		t.Fatalf("Create(%s, %s): %v", user, name, err)
	}
	return p, secret
}

func ids(ps []store.AppPassword) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// closeIt closes s, failing the test on an error other than ErrClosed.
func closeIt(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Close: %v", err)
	}
}

func details(recs []store.AuditRecord) string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Detail)
	}
	return strings.Join(out, " ")
}
