package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/legate-proxy/legate/store"
	bolt "go.etcd.io/bbolt"
)

// Last uses and audit records are queued by the one store.Batcher, which
// hands them to WriteBatch every FlushInterval: one read-write transaction,
// one fsync.

// WriteBatch writes a batch in one Update (store.BatchWriter). Uses of
// revoked ids and uses older than the stored one are skipped.
func (b *Store) WriteBatch(_ context.Context, batch store.Batch) (bool, int, error) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	type written struct {
		hash []byte
		id   string
		use  store.LastUse
	}
	var done []written
	err := b.update(func(tx *bolt.Tx) error {
		done = done[:0] // an Update may not be retried, but be safe
		for id, use := range batch.Uses {
			p, ok, err := getPassword(tx, id)
			if err != nil {
				return err
			}
			if !ok || !use.Time.After(p.LastUse.Time) {
				continue // revoked meanwhile, or an older use
			}
			p.LastUse = use
			if err := putPassword(tx, p); err != nil {
				return err
			}
			done = append(done, written{p.Hash, p.ID, use})
		}
		return appendAudit(tx, batch.Audit)
	})
	if err != nil {
		return false, 0, err
	}
	// Committed. Until this loop has run, a Verify of one of these may
	// report the previous last use (the pending one is already taken).
	for _, w := range done {
		b.rep.SetLastUse(w.hash, w.id, w.use)
	}
	return true, len(batch.Audit), nil
}

// pruneChunk is how many records one pruning transaction deletes at most.
const pruneChunk = 10_000

// PruneAudit deletes the oldest audit records stamped before before, in
// transactions of at most pruneChunk records, and moves the anchor to the
// last one deleted (store.BatchWriter). It stops at the first newer record:
// only a prefix of the chain is ever removed.
func (b *Store) PruneAudit(ctx context.Context, before time.Time) (int, store.AuditHead, error) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	total := 0
	var anchor store.AuditHead
	for {
		if err := ctx.Err(); err != nil {
			return total, anchor, err
		}
		n := 0
		err := b.update(func(tx *bolt.Tx) error {
			n = 0
			meta, audit := tx.Bucket(bucketMeta), tx.Bucket(bucketAudit)
			c := audit.Cursor()
			var last store.AuditRecord
			for k, v := c.First(); k != nil && n < pruneChunk; k, v = c.First() {
				var r store.AuditRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("decode audit record %x: %w", k, err)
				}
				if !r.Time.Before(before) {
					break
				}
				if err := c.Delete(); err != nil {
					return err
				}
				last = r
				n++
			}
			if n == 0 {
				return nil
			}
			anchor = store.AuditHead{Seq: last.Seq, Hash: last.Hash}
			v, err := json.Marshal(anchor)
			if err != nil {
				return err
			}
			return meta.Put(metaAuditAnchor, v)
		})
		if err != nil {
			return total, anchor, err
		}
		total += n
		if n < pruneChunk {
			return total, anchor, nil
		}
	}
}

// readHead returns the stored head and anchor.
func readHead(tx *bolt.Tx) (head, anchor store.AuditHead, err error) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(metaAuditSeq); len(v) == 8 {
		head.Seq = binary.BigEndian.Uint64(v)
	}
	head.Hash = meta.Get(metaAuditHead)
	if v := meta.Get(metaAuditAnchor); v != nil {
		if err := json.Unmarshal(v, &anchor); err != nil {
			return head, anchor, fmt.Errorf("decode audit anchor: %w", err)
		}
	}
	return head, anchor, nil
}
