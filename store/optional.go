package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// Optional interfaces: a Store may implement them; callers check with a type
// assertion on the unwrapped store.

// RevocationNotifier is implemented by stores shared between instances (Etcd):
// fn is called with the ids of app passwords revoked on any instance, so the
// owner can close their live sessions.
type RevocationNotifier interface {
	OnRevoke(fn func(ids []string, user string))
}

// Exporter hands out every record exactly as stored, for `legate store copy`.
type Exporter interface {
	// KeyID identifies the HMAC key. Records copied between stores with
	// different keys would never verify.
	KeyID() string
	// ExportPasswords returns every app password with its hash and last use
	// (pending last uses flushed first).
	ExportPasswords(ctx context.Context) ([]AppPassword, error)
	// ExportAudit returns the whole audit chain, oldest first (pending
	// records flushed first).
	ExportAudit(ctx context.Context) ([]AuditRecord, error)
}

// Importer stores records made elsewhere, for `legate store copy`. Both
// methods are idempotent.
type Importer interface {
	KeyID() string
	// ImportPasswords stores records as they are (id, hash, last use),
	// without the per-user limit. A record whose id is already stored with
	// the same hash is skipped; with another hash it is an error. It
	// returns how many records it wrote.
	ImportPasswords(ctx context.Context, ps []AppPassword) (int, error)
	// ImportAudit appends the records of a source chain (oldest first, as
	// ExportAudit returns them) that this log does not have yet, keeping
	// their Seq, Prev and Hash. This log must be empty or a prefix of the
	// source chain. It returns how many records it wrote.
	ImportAudit(ctx context.Context, recs []AuditRecord) (int, error)
}

// keyID is the public fingerprint of an HMAC key.
func keyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("legate key id"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// auditTail checks that a log whose last record is (seq, head) is a prefix
// of the source chain recs and returns the records to append.
func auditTail(recs []AuditRecord, seq uint64, head []byte) ([]AuditRecord, error) {
	if seq > uint64(len(recs)) {
		return nil, errorf(ErrAuditDiverges, "store: import audit: the target has %d records, the source only %d", seq, len(recs))
	}
	if seq > 0 && !hmac.Equal(recs[seq-1].Hash, head) {
		return nil, errorf(ErrAuditDiverges, "store: import audit: target record %d differs from the source's", seq)
	}
	tail := recs[seq:]
	for i, r := range tail {
		if r.Seq != seq+uint64(i)+1 {
			return nil, errorf(ErrAuditDiverges, "store: import audit: source record %d has seq %d", seq+uint64(i)+1, r.Seq)
		}
	}
	return tail, nil
}

// ErrAuditDiverges: ImportAudit's target log is not a prefix of the source.
var ErrAuditDiverges = errors.New("store: the target audit log is not a prefix of the source")
