package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The etcd audit log is one hash chain shared by every instance, with the
// same record encoding as Bolt (see audit.go). Appending is lease-free: a
// flush reads audit/head (last seq and hash), chains its records after it and
// writes them together with the new head in one txn that succeeds only if
// audit/head's ModRevision is unchanged; on conflict it reads the head again
// and rechains. One chain (rather than one per instance) keeps a single order
// and lets VerifyAudit and AuditLog work exactly as with Bolt; conflicts are
// rare because each instance appends at most once per FlushInterval.

type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash []byte `json:"hash"`
}

// auditChunk records are appended per txn (plus the head: under maxTxnOps).
const auditChunk = maxTxnOps - 1

// readHead returns the chain head and the ModRevision of its key (0: none).
func (s *Etcd) readHead(ctx context.Context, opts ...clientv3.OpOption) (auditHead, int64, error) {
	resp, err := s.cli.Get(ctx, s.auditHeadKey(), opts...)
	if err != nil {
		return auditHead{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return auditHead{}, 0, nil
	}
	var h auditHead
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		return auditHead{}, 0, fmt.Errorf("decode audit head: %w", err)
	}
	return h, resp.Kvs[0].ModRevision, nil
}

// appendAudit chains and stores recs (assigning Seq, Prev and Hash) and
// returns how many were written before an error.
func (s *Etcd) appendAudit(ctx context.Context, recs []AuditRecord) (int, error) {
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
func (s *Etcd) chainOps(chunk []AuditRecord, head auditHead) ([]clientv3.Op, string, error) {
	ops := make([]clientv3.Op, 0, len(chunk)+1)
	seq, prev := head.Seq, head.Hash
	for i := range chunk {
		seq++
		r := &chunk[i]
		r.Seq, r.Time, r.User, r.Prev = seq, r.Time.UTC(), NormalizeUser(r.User), prev
		h, err := auditHash(*r)
		if err != nil {
			return nil, "", fmt.Errorf("audit record %d: %w", seq, err)
		}
		r.Hash = h
		v, err := json.Marshal(r)
		if err != nil {
			return nil, "", fmt.Errorf("audit record %d: %w", seq, err)
		}
		ops = append(ops, clientv3.OpPut(s.auditKey(seq), string(v)))
		prev = h
	}
	next, err := json.Marshal(auditHead{Seq: seq, Hash: prev})
	return ops, string(next), err
}

// auditPage is how many records one range read returns.
const auditPage = 1000

// AuditLog returns matching audit records, oldest first, after flushing.
// It reads newest first in pages, all at one revision.
func (s *Etcd) AuditLog(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	release, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.flush(ctx); err != nil {
		return nil, err
	}
	user := NormalizeUser(q.User)
	var out []AuditRecord
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
			var r AuditRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return nil, fmt.Errorf("store: audit log: decode %s: %w", kv.Key, err)
			}
			if !q.Since.IsZero() && r.Time.Before(q.Since) {
				if r.Time.Before(q.Since.Add(-sinceSkew)) {
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

// forEachAudit calls fn for every stored record, oldest first, at one
// revision, and returns the head at that revision.
func (s *Etcd) forEachAudit(ctx context.Context, fn func(key string, v []byte) error) (auditHead, error) {
	head, _, err := s.readHead(ctx)
	if err != nil {
		return auditHead{}, err
	}
	start, end := s.auditPrefix(), clientv3.GetPrefixRangeEnd(s.auditPrefix())
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(auditPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, start, opts...)
		if err != nil {
			return auditHead{}, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
			// The head as of the same revision as the records.
			if head, _, err = s.readHead(ctx, clientv3.WithRev(rev)); err != nil {
				return auditHead{}, err
			}
		}
		for _, kv := range resp.Kvs {
			if err := fn(string(kv.Key), kv.Value); err != nil {
				return auditHead{}, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return head, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// VerifyAudit walks the whole chain (after flushing) and reports the first
// broken record, like Bolt.VerifyAudit.
func (s *Etcd) VerifyAudit(ctx context.Context) (VerifyResult, error) {
	release, err := s.begin(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	defer release()
	if err := s.flush(ctx); err != nil {
		return VerifyResult{}, err
	}
	var (
		res    VerifyResult
		prev   []byte
		want   uint64 = 1
		broken bool
	)
	fail := func(seq uint64, format string, args ...any) error {
		res.OK, res.BrokenAt, res.Problem, broken = false, seq, fmt.Sprintf(format, args...), true
		return errStopWalk
	}
	head, err := s.forEachAudit(ctx, func(key string, v []byte) error {
		seq, perr := strconv.ParseUint(strings.TrimPrefix(key, s.auditPrefix()), 16, 64)
		if perr != nil {
			return fail(want, "malformed key %q where record %d should be", key, want)
		}
		if seq != want {
			return fail(want, "record %d is missing (next record is %d)", want, seq)
		}
		res.Records++
		var r AuditRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fail(seq, "record %d does not decode: %v", seq, err)
		}
		if r.Seq != seq {
			return fail(seq, "record stored under %d says seq %d", seq, r.Seq)
		}
		if !bytes.Equal(r.Prev, prev) {
			return fail(seq, "record %d prev hash %x does not match hash %x of record %d", seq, r.Prev, prev, seq-1)
		}
		h, err := auditHash(r)
		if err != nil {
			return fail(seq, "record %d does not encode: %v", seq, err)
		}
		if !bytes.Equal(h, r.Hash) {
			return fail(seq, "record %d was modified: hash is %x, contents hash to %x", seq, r.Hash, h)
		}
		prev = r.Hash
		want++
		return nil
	})
	if broken {
		return res, nil
	}
	if err != nil {
		return VerifyResult{}, fmt.Errorf("store: verify audit: %w", err)
	}
	last := want - 1
	if head.Seq != last {
		return VerifyResult{Records: res.Records, BrokenAt: last + 1, Problem: fmt.Sprintf("log ends at record %d but %d were written: records were removed from the end", last, head.Seq)}, nil
	}
	if !bytes.Equal(head.Hash, prev) {
		return VerifyResult{Records: res.Records, BrokenAt: last, Problem: fmt.Sprintf("last record %d hash does not match the recorded head", last)}, nil
	}
	res.OK = true
	return res, nil
}

// errStopWalk ends forEachAudit early without being an error.
var errStopWalk = fmt.Errorf("stop")
