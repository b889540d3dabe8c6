package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/legate-proxy/legate/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The etcd audit log is one hash chain shared by every instance, with the
// same record encoding as store/bolt (see store/audit.go). Appending is lease-free: a
// flush reads audit/head (last seq and hash), chains its records after it and
// writes them together with the new head in one txn that succeeds only if
// audit/head's ModRevision is unchanged; on conflict it reads the head again
// and rechains. One chain (rather than one per instance) keeps a single order
// and lets VerifyAudit and AuditLog work exactly as with store/bolt; conflicts are
// rare because each instance appends at most once per FlushInterval.

// auditChunk records are appended per txn (plus the head: under maxTxnOps).
const auditChunk = maxTxnOps - 1

// readHead returns the chain head and the ModRevision of its key (0: none).
func (s *Store) readHead(ctx context.Context, opts ...clientv3.OpOption) (store.AuditHead, int64, error) {
	resp, err := s.cli.Get(ctx, s.auditHeadKey(), opts...)
	if err != nil {
		return store.AuditHead{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return store.AuditHead{}, 0, nil
	}
	var h store.AuditHead
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		return store.AuditHead{}, 0, fmt.Errorf("decode audit head: %w", err)
	}
	return h, resp.Kvs[0].ModRevision, nil
}

// appendAudit chains and stores recs (assigning Seq, Prev and Hash) and
// returns how many were written before an error.
func (s *Store) appendAudit(ctx context.Context, recs []store.AuditRecord) (int, error) {
	written := 0
	for written < len(recs) {
		chunk := recs[written : written+min(auditChunk, len(recs)-written)]
		ok := false
		for range maxTxnRetries {
			head, rev, err := s.readHead(ctx)
			if err != nil {
				return written, err
			}
			ops, next, err := s.chainOps(chunk, head)
			if err != nil {
				return written, err
			}
			ops = append(ops, clientv3.OpPut(s.auditHeadKey(), next))
			resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.auditHeadKey()), "=", rev)).Then(ops...).Commit()
			if err != nil {
				return written, err
			}
			if ok = resp.Succeeded; ok {
				break
			}
		}
		if !ok {
			return written, fmt.Errorf("audit head changing too fast")
		}
		written += len(chunk)
	}
	return written, nil
}

// chainOps assigns chain fields after head and returns the puts and the new
// head's JSON.
func (s *Store) chainOps(chunk []store.AuditRecord, head store.AuditHead) ([]clientv3.Op, string, error) {
	vals, next, err := store.Chain(chunk, head)
	if err != nil {
		return nil, "", err
	}
	ops := make([]clientv3.Op, 0, len(chunk)+1)
	for i, v := range vals {
		ops = append(ops, clientv3.OpPut(s.auditKey(chunk[i].Seq), string(v)))
	}
	h, err := json.Marshal(next)
	return ops, string(h), err
}

// auditPage is how many records one range read returns.
const auditPage = 1000

// AuditLog returns matching audit records, oldest first, after flushing.
// It reads newest first in pages, all at one revision.
func (s *Store) AuditLog(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.lc.End()
	if err := s.batch.Flush(ctx); err != nil {
		return nil, err
	}
	if q.Seq != 0 {
		resp, err := s.cli.Get(ctx, s.auditKey(q.Seq))
		if err != nil {
			return nil, fmt.Errorf("store: audit log: %w", err)
		}
		var out []store.AuditRecord
		for _, kv := range resp.Kvs {
			var r store.AuditRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return nil, fmt.Errorf("store: audit log: decode %s: %w", kv.Key, err)
			}
			out = append(out, r)
		}
		return out, nil
	}
	user := store.NormalizeUser(q.User)
	var out []store.AuditRecord
	start := s.auditPrefix()
	end := clientv3.GetPrefixRangeEnd(start)
	var rev int64
pages:
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(auditPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, start, opts...)
		if err != nil {
			return nil, fmt.Errorf("store: audit log: %w", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			var r store.AuditRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return nil, fmt.Errorf("store: audit log: decode %s: %w", kv.Key, err)
			}
			if !q.Since.IsZero() && r.Time.Before(q.Since) {
				if r.Time.Before(q.Since.Add(-store.SinceSkew)) {
					break pages
				}
				continue
			}
			if user != "" && r.User != user {
				continue
			}
			out = append(out, r)
			if q.Limit > 0 && len(out) >= q.Limit {
				break pages
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive
	}
	slices.Reverse(out)
	return out, nil
}

// forEachAudit calls start with the anchor, then fn for every stored
// record, oldest first, all at one revision, and returns the head at that
// revision.
func (s *Store) forEachAudit(ctx context.Context, start func(anchor store.AuditHead), fn func(key string, v []byte) error) (store.AuditHead, error) {
	var head store.AuditHead
	from, end := s.auditPrefix(), clientv3.GetPrefixRangeEnd(s.auditPrefix())
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(auditPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return head, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
			// The head and anchor as of the same revision as the records.
			if head, _, err = s.readHead(ctx, clientv3.WithRev(rev)); err != nil {
				return head, err
			}
			anchor, err := s.readAnchor(ctx, clientv3.WithRev(rev))
			if err != nil {
				return head, err
			}
			start(anchor)
		}
		for _, kv := range resp.Kvs {
			if err := fn(string(kv.Key), kv.Value); err != nil {
				return head, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return head, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// VerifyAudit walks the whole chain (after flushing), from the anchor if
// records were pruned, and reports the first broken record, like store/bolt.
func (s *Store) VerifyAudit(ctx context.Context) (store.VerifyResult, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return store.VerifyResult{}, err
	}
	defer s.lc.End()
	if err := s.batch.Flush(ctx); err != nil {
		return store.VerifyResult{}, err
	}
	var chk *store.ChainCheck
	broken := false
	head, err := s.forEachAudit(ctx, func(anchor store.AuditHead) {
		chk = store.NewChainCheck(anchor)
	}, func(key string, v []byte) error {
		seq, perr := s.seqOf(key)
		if perr != nil {
			broken = !chk.Fail(chk.Want(), "malformed key %q where record %d should be", key, chk.Want())
			return errStopWalk
		}
		if !chk.Next(seq, v) {
			broken = true
			return errStopWalk
		}
		return nil
	})
	if err != nil && !broken {
		return store.VerifyResult{}, fmt.Errorf("store: verify audit: %w", err)
	}
	return chk.End(head), nil
}

// errStopWalk ends forEachAudit early without being an error.
var errStopWalk = fmt.Errorf("stop")
