package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The audit log is a hash chain. Record n (n = 1, 2, …) is stored under the
// 8-byte big-endian key n as JSON, with
//
//	Seq  = n
//	Prev = Hash of record n-1 (empty for record 1)
//	Hash = SHA-256( Prev || json.Marshal(record with Hash = nil) )
//
// where json.Marshal is encoding/json applied to AuditRecord as declared in
// store.go (fields in declaration order, Time in UTC as RFC 3339 with
// nanoseconds, byte slices as standard base64, empty optional fields
// omitted). The stored value is exactly json.Marshal of the record including
// Hash. The meta bucket keeps the last Seq and Hash, so VerifyAudit also
// notices records cut off the end.

// sinceSkew is how far out of time order AuditLog expects records to be.
const sinceSkew = 5 * time.Minute

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// auditHash computes the chain hash of rec (its Hash field is ignored).
func auditHash(rec AuditRecord) ([]byte, error) {
	rec.Hash = nil
	enc, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(rec.Prev)
	h.Write(enc)
	return h.Sum(nil), nil
}

// appendAudit chains and stores recs, assigning Seq, Prev and Hash in place.
func appendAudit(tx *bolt.Tx, recs []AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	meta := tx.Bucket(bucketMeta)
	audit := tx.Bucket(bucketAudit)
	var seq uint64
	if v := meta.Get(metaAuditSeq); len(v) == 8 {
		seq = binary.BigEndian.Uint64(v)
	}
	prev := bytes.Clone(meta.Get(metaAuditHead))
	for i := range recs {
		seq++
		r := &recs[i]
		r.Seq = seq
		r.Time = r.Time.UTC()
		r.User = NormalizeUser(r.User)
		r.Prev = prev
		h, err := auditHash(*r)
		if err != nil {
			return fmt.Errorf("audit record %d: %w", seq, err)
		}
		r.Hash = h
		v, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("audit record %d: %w", seq, err)
		}
		if err := audit.Put(seqKey(seq), v); err != nil {
			return err
		}
		prev = h
	}
	if err := meta.Put(metaAuditSeq, seqKey(seq)); err != nil {
		return err
	}
	return meta.Put(metaAuditHead, prev)
}

// AuditLog returns matching audit records, oldest first. Pending records are
// flushed first, so a decision made a moment ago is included.
func (b *Bolt) AuditLog(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := b.flush(); err != nil {
		return nil, err
	}
	user := NormalizeUser(q.User)
	var out []AuditRecord
	err = b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		// Newest first, so that Limit and Since can stop early.
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if len(out)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var r AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode audit record %x: %w", k, err)
			}
			if !q.Since.IsZero() && r.Time.Before(q.Since) {
				// Seq order is the order of Audit calls; callers may stamp
				// their own times, so allow some skew before stopping.
				if r.Time.Before(q.Since.Add(-sinceSkew)) {
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

// VerifyAudit walks the whole chain and reports the first broken record.
// Pending records are flushed first.
func (b *Bolt) VerifyAudit(ctx context.Context) (VerifyResult, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	defer release()
	if err := b.flush(); err != nil {
		return VerifyResult{}, err
	}
	var res VerifyResult
	err = b.db.View(func(tx *bolt.Tx) error {
		res = verifyChain(ctx, tx)
		return ctx.Err()
	})
	if err != nil {
		return VerifyResult{}, fmt.Errorf("store: verify audit: %w", err)
	}
	return res, nil
}

func verifyChain(ctx context.Context, tx *bolt.Tx) VerifyResult {
	var res VerifyResult
	broken := func(seq uint64, format string, args ...any) VerifyResult {
		res.OK, res.BrokenAt, res.Problem = false, seq, fmt.Sprintf(format, args...)
		return res
	}
	var prev []byte
	var want uint64 = 1
	c := tx.Bucket(bucketAudit).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if res.Records%1024 == 0 && ctx.Err() != nil {
			return res
		}
		if len(k) != 8 {
			return broken(want, "malformed key %x where record %d should be", k, want)
		}
		seq := binary.BigEndian.Uint64(k)
		if seq != want {
			return broken(want, "record %d is missing (next record is %d)", want, seq)
		}
		res.Records++
		var r AuditRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return broken(seq, "record %d does not decode: %v", seq, err)
		}
		if r.Seq != seq {
			return broken(seq, "record stored under %d says seq %d", seq, r.Seq)
		}
		if !bytes.Equal(r.Prev, prev) {
			return broken(seq, "record %d prev hash %x does not match hash %x of record %d", seq, r.Prev, prev, seq-1)
		}
		h, err := auditHash(r)
		if err != nil {
			return broken(seq, "record %d does not encode: %v", seq, err)
		}
		if !bytes.Equal(h, r.Hash) {
			return broken(seq, "record %d was modified: hash is %x, contents hash to %x", seq, r.Hash, h)
		}
		prev = r.Hash
		want++
	}
	last := want - 1
	meta := tx.Bucket(bucketMeta)
	var metaSeq uint64
	if v := meta.Get(metaAuditSeq); len(v) == 8 {
		metaSeq = binary.BigEndian.Uint64(v)
	}
	if metaSeq != last {
		return broken(last+1, "log ends at record %d but %d were written: records were removed from the end", last, metaSeq)
	}
	if !bytes.Equal(meta.Get(metaAuditHead), prev) {
		return broken(last, "last record %d hash does not match the recorded head", last)
	}
	res.OK = true
	return res
}
