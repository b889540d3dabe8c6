package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Optional interfaces: a Store may implement them; callers check with a type
// assertion on the unwrapped store.

// SignOuts is implemented by stores shared between instances (store/etcd):
// the portal keeps its sign-outs there, so that a session signed out on one
// instance is refused by every other (a copied cookie is no use anywhere).
// With a store of one instance (bbolt) the portal keeps them in a file of
// its own beside its session key.
type SignOuts interface {
	// EndSession records that the portal session id was signed out. The
	// record may be dropped once until has passed: the session could not
	// be used after it anyway.
	EndSession(ctx context.Context, id string, until time.Time) error
	// SessionEnded reports whether the portal session id was signed out.
	SessionEnded(ctx context.Context, id string) (bool, error)
}

// RevocationNotifier is implemented by stores shared between instances (store/etcd):
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
	// ExportAudit returns the audit chain after its pruned prefix, oldest
	// first (pending records flushed first).
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
	// their Seq, Prev and Hash. This log must be empty (it then takes the
	// source's anchor) or a prefix of the source chain. It returns how
	// many records it wrote.
	ImportAudit(ctx context.Context, recs []AuditRecord) (int, error)
}

// keyID is the public fingerprint of an HMAC key.
func keyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("legate key id"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// AuditTail checks that a log whose last record is head is a prefix of the
// source chain recs (oldest first, as ExportAudit returns them: after the
// source's pruned prefix, if any) and returns the records to append. When
// the log is empty and the source was pruned, anchor is the source's anchor,
// which the log must record before appending; otherwise it is zero.
func AuditTail(recs []AuditRecord, head AuditHead) (tail []AuditRecord, anchor AuditHead, err error) {
	if len(recs) == 0 {
		if head.Seq > 0 {
			return nil, AuditHead{}, Errorf(ErrAuditDiverges, "store: import audit: the target has %d records, the source none", head.Seq)
		}
		return nil, AuditHead{}, nil
	}
	first := recs[0].Seq
	last := first + uint64(len(recs)) - 1
	switch {
	case first == 0:
		return nil, AuditHead{}, Errorf(ErrAuditDiverges, "store: import audit: source record without a seq")
	case head.Seq == 0:
		tail = recs
		if first > 1 {
			anchor = AuditHead{Seq: first - 1, Hash: recs[0].Prev}
		}
	case head.Seq < first-1:
		return nil, AuditHead{}, Errorf(ErrAuditDiverges, "store: import audit: the target ends at record %d, before the source's first record %d", head.Seq, first)
	case head.Seq == first-1:
		if !hmac.Equal(recs[0].Prev, head.Hash) {
			return nil, AuditHead{}, Errorf(ErrAuditDiverges, "store: import audit: target record %d differs from the source's", head.Seq)
		}
		tail = recs
	case head.Seq > last:
		return nil, AuditHead{}, Errorf(ErrAuditDiverges, "store: import audit: the target has %d records, the source only %d", head.Seq, last)
	default:
		if !hmac.Equal(recs[head.Seq-first].Hash, head.Hash) {
			return nil, AuditHead{}, Errorf(ErrAuditDiverges, "store: import audit: target record %d differs from the source's", head.Seq)
		}
		tail = recs[head.Seq-first+1:]
	}
	next := head.Seq + 1
	if head.Seq == 0 {
		next = first
	}
	for i, r := range tail {
		if r.Seq != next+uint64(i) {
			return nil, AuditHead{}, Errorf(ErrAuditDiverges, "store: import audit: source record %d has seq %d", next+uint64(i), r.Seq)
		}
	}
	return tail, anchor, nil
}

// ErrAuditDiverges: ImportAudit's target log is not a prefix of the source.
var ErrAuditDiverges = errors.New("store: the target audit log is not a prefix of the source")
