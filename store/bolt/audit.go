package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/legate-proxy/legate/store"
	bolt "go.etcd.io/bbolt"
)

// The audit log (see store/audit.go for the chain): record n is stored in
// the audit bucket under the 8-byte big-endian key n; the meta bucket keeps
// the head (last Seq and Hash) and, after pruning, the anchor.

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// appendAudit chains and stores recs, assigning Seq, Prev and Hash in place.
func appendAudit(tx *bolt.Tx, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	head, _, err := readHead(tx)
	if err != nil {
		return err
	}
	head.Hash = bytes.Clone(head.Hash)
	vals, next, err := store.Chain(recs, head)
	if err != nil {
		return err
	}
	audit := tx.Bucket(bucketAudit)
	for i, v := range vals {
		if err := audit.Put(seqKey(recs[i].Seq), v); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(metaAuditSeq, seqKey(next.Seq)); err != nil {
		return err
	}
	return meta.Put(metaAuditHead, next.Hash)
}

// AuditLog returns matching audit records, oldest first. Pending records are
// flushed first, so a decision made a moment ago is included.
func (b *Store) AuditLog(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer b.lc.End()
	if err := b.batch.Flush(ctx); err != nil {
		return nil, err
	}
	user := store.NormalizeUser(q.User)
	var out []store.AuditRecord
	err := b.db.View(func(tx *bolt.Tx) error {
		if q.Seq != 0 {
			v := tx.Bucket(bucketAudit).Get(seqKey(q.Seq))
			if v == nil {
				return nil
			}
			var r store.AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode audit record %d: %w", q.Seq, err)
			}
			out = append(out, r)
			return nil
		}
		c := tx.Bucket(bucketAudit).Cursor()
		// Newest first, so that Limit and Since can stop early.
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if len(out)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var r store.AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode audit record %x: %w", k, err)
			}
			if !q.Since.IsZero() && r.Time.Before(q.Since) {
				// Seq order is the order of Audit calls; callers may stamp
				// their own times, so allow some skew before stopping.
				if r.Time.Before(q.Since.Add(-store.SinceSkew)) {
					break
				}
				continue
			}
			if user != "" && r.User != user {
				continue
			}
			out = append(out, r)
			if q.Limit > 0 && len(out) >= q.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// VerifyAudit walks the whole chain, from the anchor if records were
// pruned, and reports the first broken record. Pending records are flushed
// first.
func (b *Store) VerifyAudit(ctx context.Context) (store.VerifyResult, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return store.VerifyResult{}, err
	}
	defer b.lc.End()
	if err := b.batch.Flush(ctx); err != nil {
		return store.VerifyResult{}, err
	}
	var res store.VerifyResult
	err := b.db.View(func(tx *bolt.Tx) error {
		head, anchor, err := readHead(tx)
		if err != nil {
			return err
		}
		chk := store.NewChainCheck(anchor)
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if chk.Want()%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if len(k) != 8 {
				chk.Fail(chk.Want(), "malformed key %x where record %d should be", k, chk.Want())
				break
			}
			if !chk.Next(binary.BigEndian.Uint64(k), v) {
				break
			}
		}
		res = chk.End(head)
		return nil
	})
	if err != nil {
		return store.VerifyResult{}, fmt.Errorf("store: verify audit: %w", err)
	}
	return res, nil
}
