package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/legate-proxy/legate/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Last uses and audit records are queued by the one store.Batcher, which
// hands them to WriteBatch every FlushInterval: a few txns of at most
// maxTxnOps operations each. No login costs an etcd write.

// WriteBatch writes the last uses, then appends the audit records
// (store.BatchWriter). Last uses go in txns of nested txns, each conditional
// on the record still being the same incarnation (CreateRevision), so a use
// never resurrects a revoked password.
func (s *Store) WriteBatch(ctx context.Context, b store.Batch) (bool, int, error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if err := s.flushUses(ctx, b.Uses); err != nil {
		return false, 0, err
	}
	n, err := s.appendAudit(ctx, b.Audit)
	return true, n, err
}

// flushUses writes uses newer than the replica's. Uses of ids this instance
// does not know (revoked) are dropped. On error nothing is lost that the
// caller does not requeue: the writes are idempotent.
func (s *Store) flushUses(ctx context.Context, uses map[string]store.LastUse) error {
	var ops []clientv3.Op
	commit := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.cli.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for id, use := range uses {
		ref, ok := s.feed.ref(id)
		if !ok {
			continue
		}
		rec := s.rep.Get(ref.hash)
		if rec == nil || rec.ID != id || !use.Time.After(rec.LastUse.Time) {
			continue
		}
		p := rec.Clone()
		p.LastUse = use
		v, err := store.MarshalRecord(p)
		if err != nil {
			return err
		}
		key := s.pwKey(ref.user, id)
		ops = append(ops, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", ref.createRev)},
			[]clientv3.Op{clientv3.OpPut(key, string(v))}, nil))
		if len(ops) == maxTxnOps {
			if err := commit(); err != nil {
				return err
			}
		}
	}
	return commit()
}

// PruneAudit deletes the oldest audit records stamped before before and
// moves audit/anchor to the last one deleted (store.BatchWriter). Each txn
// deletes a chunk and writes the anchor, conditional on the anchor not
// having moved meanwhile (another instance pruning), so it never goes back.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, store.AuditHead, error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	total := 0
	var anchor store.AuditHead
	for range maxTxnRetries {
		resp, err := s.cli.Get(ctx, s.auditAnchorKey())
		if err != nil {
			return total, anchor, err
		}
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
		}
		page, err := s.cli.Get(ctx, s.auditPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(auditChunk),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return total, anchor, err
		}
		var ops []clientv3.Op
		var last store.AuditRecord
		for _, kv := range page.Kvs {
			var r store.AuditRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return total, anchor, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			if !r.Time.Before(before) {
				break
			}
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			last = r
		}
		if len(ops) == 0 {
			return total, anchor, nil
		}
		a := store.AuditHead{Seq: last.Seq, Hash: last.Hash}
		v, err := json.Marshal(a)
		if err != nil {
			return total, anchor, err
		}
		ops = append(ops, clientv3.OpPut(s.auditAnchorKey(), string(v)))
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.auditAnchorKey()), "=", rev)).Then(ops...).Commit()
		if err != nil {
			return total, anchor, err
		}
		if tr.Succeeded {
			total += len(ops) - 1
			anchor = a
		}
		if len(ops)-1 < auditChunk && tr.Succeeded {
			return total, anchor, nil
		}
	}
	return total, anchor, fmt.Errorf("audit anchor changing too fast")
}

// readAnchor returns the anchor left by pruning (zero: none).
func (s *Store) readAnchor(ctx context.Context, opts ...clientv3.OpOption) (store.AuditHead, error) {
	resp, err := s.cli.Get(ctx, s.auditAnchorKey(), opts...)
	if err != nil || len(resp.Kvs) == 0 {
		return store.AuditHead{}, err
	}
	var a store.AuditHead
	if err := json.Unmarshal(resp.Kvs[0].Value, &a); err != nil {
		return store.AuditHead{}, fmt.Errorf("decode audit anchor: %w", err)
	}
	return a, nil
}

// seqOf parses the Seq out of an audit record key.
func (s *Store) seqOf(key string) (uint64, error) {
	return strconv.ParseUint(strings.TrimPrefix(key, s.auditPrefix()), 16, 64)
}
