// Package store keeps app passwords, their last use and the audit log.
//
// App passwords are generated here from crypto/rand (16 characters from an
// alphabet without look-alikes, shown as XXXX-XXXX-XXXX-XXXX) and stored only as
// HMAC-SHA-256 under a server key that lives in a file beside the database
// (docs/contract.md §1). Lookup goes through a hash→id index, never a scan.
//
// Store is the interface the rest of Legate uses. The backends live in their
// own packages: store/bolt (go.etcd.io/bbolt) is the embedded one, store/etcd
// (go.etcd.io/etcd/client/v3) the one several instances share; nothing else
// imports bbolt or etcd. This package holds what they share: the types, secret
// generation and matching, the in-memory Replica, the Lifecycle, the audit
// chain and the one Batcher that queues last uses and audit records.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Errors returned by stores. Test with errors.Is.
var (
	// ErrNotFound: no app password matches (by secret, id or name).
	ErrNotFound = errors.New("store: app password not found")
	// ErrLimit: the user already has the maximum number of app passwords.
	// The wrapped message names the limit.
	ErrLimit = errors.New("store: app password limit reached")
	// ErrNameTaken: the user already has an app password with that name.
	ErrNameTaken = errors.New("store: app password name already in use")
	// ErrLocked: another process holds the database.
	ErrLocked = errors.New("store: database is locked by another legate process")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// HashHMACSHA256 is the algorithm recorded with every secret.
const HashHMACSHA256 = "hmac-sha256"

// AppPassword is one stored app password. The secret itself is never stored.
type AppPassword struct {
	ID       string         `json:"id"`
	User     string         `json:"user"`
	Name     string         `json:"name"`
	Created  time.Time      `json:"created"`
	Expires  time.Time      `json:"expires,omitzero"`   // zero: never
	Scope    []string       `json:"scope,omitempty"`    // empty: all protocols
	Networks []netip.Prefix `json:"networks,omitempty"` // empty: anywhere
	LastUse  LastUse        `json:"last_use,omitzero"`
	// HashAlg and Hash are the keyed hash of the secret. They never appear
	// in AppPassword's JSON (the CLI, the admin socket and the portal hand
	// out app passwords as JSON): only the backends' stored encoding
	// (MarshalRecord) carries them.
	HashAlg string `json:"-"`
	Hash    []byte `json:"-"`
}

// LastUse records the most recent successful login with an app password.
type LastUse struct {
	Time     time.Time  `json:"time,omitzero"`
	IP       netip.Addr `json:"ip,omitzero"`
	Protocol string     `json:"protocol,omitempty"`
	Client   string     `json:"client,omitempty"` // IMAP ID / SMTP EHLO name
}

// CreateRequest asks for a new app password.
type CreateRequest struct {
	User     string
	Name     string
	Expires  time.Time
	Scope    []string
	Networks []netip.Prefix
	// Limit is the per-user maximum, enforced inside the write transaction;
	// zero means 40.
	Limit int
}

// Selector picks app passwords of one user to revoke. Exactly one of ID, Name
// or All is set.
type Selector struct {
	ID   string
	Name string
	All  bool
}

// AuditRecord is one entry of the tamper-evident audit log. It never holds a
// secret. Hash = SHA-256 over the previous record's hash and this record's
// fields (see audit.go for the exact encoding).
type AuditRecord struct {
	Seq           uint64    `json:"seq"`
	Time          time.Time `json:"time"`
	Action        string    `json:"action"`        // login, create, revoke, kill
	Via           string    `json:"via,omitempty"` // imap, smtp, ldap, cli, portal, admin
	User          string    `json:"user"`
	Protocol      string    `json:"protocol,omitempty"`
	IP            string    `json:"ip,omitempty"`
	Outcome       string    `json:"outcome"` // allow, deny, ok, error, ...
	Rule          string    `json:"rule,omitempty"`
	AppPasswordID string    `json:"app_password_id,omitempty"`
	Client        string    `json:"client,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	// Count is how many attempts one aggregated record stands for
	// (throttled logins from one address for one name within a window);
	// zero means one.
	Count uint64 `json:"count,omitempty"`
	Prev  []byte `json:"prev,omitempty"`
	Hash  []byte `json:"hash,omitempty"`
}

// AuditQuery filters audit records. Zero fields match everything.
type AuditQuery struct {
	User  string
	Since time.Time
	Limit int // most recent N; zero: all
	// Seq, when set, selects only the record with this sequence number
	// (none if it was pruned or never written).
	Seq uint64
}

// VerifyResult reports the state of the audit hash chain.
type VerifyResult struct {
	Records  uint64 // records checked
	OK       bool
	BrokenAt uint64 // sequence number of the first broken record when !OK
	Problem  string
	// Head is the last record when OK.
	Head AuditHead
	// Pruned is the Seq of the last record removed by retention (zero:
	// none); the chain is verified from the record after it.
	Pruned uint64
}

// AuditStats is implemented by stores whose audit queue can drop records
// (both backends): counts since open, for metrics and tests.
type AuditStats interface {
	AuditStats() BatchStats
}

// InMemory is implemented by stores that keep every app password in memory
// (both backends, for Verify): AppPasswordsByID answers from there, without
// I/O, with the app passwords of ids that exist (a revoked one is absent).
// It fails when the memory cannot be trusted (etcd out of touch for longer
// than its stale grace).
type InMemory interface {
	AppPasswordsByID(ctx context.Context, ids map[string]struct{}) (map[string]AppPassword, error)
}

// Store is what Legate needs from an app-password store. Implementations are
// safe for concurrent use.
type Store interface {
	// Create generates a new app password and returns its record and the
	// secret in display form (XXXX-XXXX-XXXX-XXXX). The secret is returned
	// once and never stored.
	Create(ctx context.Context, req CreateRequest) (AppPassword, string, error)
	// List returns the user's app passwords, oldest first.
	List(ctx context.Context, user string) ([]AppPassword, error)
	// Users returns every user that has at least one app password.
	Users(ctx context.Context) ([]string, error)
	// Verify finds the app password whose secret this is and which belongs to
	// user (ErrNotFound otherwise). It costs one HMAC and one index lookup.
	Verify(ctx context.Context, user, secret string) (AppPassword, error)
	// Revoke deletes the selected app passwords and returns them.
	Revoke(ctx context.Context, user string, sel Selector) ([]AppPassword, error)
	// RecordUse notes a successful login. It never blocks on disk: uses are
	// batched and flushed every few seconds and on Close.
	RecordUse(id string, use LastUse)
	// Audit appends records to the audit log (batched like RecordUse).
	// It bounds what it keeps: long fields are cut with a marker,
	// throttled attempts aggregated, the queue bounded (see Batcher).
	Audit(rec AuditRecord)
	// AuditLog returns matching audit records, oldest first.
	AuditLog(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
	// VerifyAudit recomputes the audit hash chain.
	VerifyAudit(ctx context.Context) (VerifyResult, error)
	// Flush writes pending last-use and audit records now.
	Flush(ctx context.Context) error
	// Close flushes and releases the store.
	Close() error
}

// NormalizeUser is how every store canonicalises user names: surrounding
// space trimmed, lower case.
func NormalizeUser(u string) string { return toLowerTrim(u) }
