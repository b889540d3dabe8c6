package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/legate-proxy/legate/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ExportPasswords returns every app password as stored (after flushing),
// sorted by user, then oldest first.
func (s *Store) ExportPasswords(ctx context.Context) ([]store.AppPassword, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.lc.End()
	if err := s.batch.Flush(ctx); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.pwPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("store: export: %w", err)
	}
	out := make([]store.AppPassword, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := store.UnmarshalRecord(string(kv.Key), kv.Value)
		if err != nil {
			return nil, fmt.Errorf("store: export: decode %s: %w", kv.Key, err)
		}
		out = append(out, p)
	}
	store.SortExport(out)
	return out, nil
}

// ExportAudit returns the whole audit chain, oldest first, after flushing.
func (s *Store) ExportAudit(ctx context.Context) ([]store.AuditRecord, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.lc.End()
	if err := s.batch.Flush(ctx); err != nil {
		return nil, err
	}
	var out []store.AuditRecord
	_, err := s.forEachAudit(ctx, func(store.AuditHead) {}, func(key string, v []byte) error {
		var r store.AuditRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: export audit: %w", err)
	}
	return out, nil
}

// importChunk is how many records one import txn writes (3 puts and 2
// compares each, plus the user's counter and fence).
const importChunk = 25

// ImportPasswords stores records as they are; see Importer.
func (s *Store) ImportPasswords(ctx context.Context, ps []store.AppPassword) (int, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return 0, err
	}
	defer s.lc.End()
	byUser := make(map[string][]store.AppPassword)
	for _, p := range ps {
		if p.User == "" || p.ID == "" || strings.ContainsRune(p.User, 0) {
			return 0, fmt.Errorf("store: import: record %q of %q has no valid id or user", p.ID, p.User)
		}
		byUser[p.User] = append(byUser[p.User], p)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	var lastRev int64
	for user, recs := range byUser {
		for tries := 0; ; tries++ {
			if tries == maxTxnRetries {
				return written, fmt.Errorf("store: import: user %s: conflicting writes or an index key held by another id", user)
			}
			snap, err := s.snapshot(ctx, user)
			if err != nil {
				return written, fmt.Errorf("store: import: %w", err)
			}
			have := make(map[string][]byte, len(snap.ps))
			for _, p := range snap.ps {
				have[p.ID] = p.Hash
			}
			var todo []store.AppPassword
			for _, p := range recs {
				h, ok := have[p.ID]
				if ok && !bytes.Equal(h, p.Hash) {
					return written, fmt.Errorf("store: import: id %s of %s exists with another secret", p.ID, user)
				}
				if !ok {
					todo = append(todo, p)
				}
			}
			if len(todo) == 0 {
				break
			}
			todo = todo[:min(len(todo), importChunk)]
			cmps := []clientv3.Cmp{s.fenceCmp(user, snap)}
			ops := []clientv3.Op{s.countOp(user, len(snap.ps)+len(todo))}
			for _, p := range todo {
				v, err := store.MarshalRecord(p)
				if err != nil {
					return written, err
				}
				cmps = append(cmps,
					clientv3.Compare(clientv3.CreateRevision(s.idxKey(p.Hash)), "=", 0),
					clientv3.Compare(clientv3.CreateRevision(s.idKey(p.ID)), "=", 0))
				ops = append(ops,
					clientv3.OpPut(s.pwKey(user, p.ID), string(v)),
					clientv3.OpPut(s.idxKey(p.Hash), user+"\x00"+p.ID),
					clientv3.OpPut(s.idKey(p.ID), user))
			}
			resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				return written, fmt.Errorf("store: import: %w", err)
			}
			if resp.Succeeded {
				written += len(todo)
				lastRev = resp.Header.Revision
				tries = 0
			}
		}
	}
	if lastRev != 0 {
		s.feed.waitApplied(ctx, lastRev)
	}
	return written, nil
}

// ImportAudit appends the part of a source chain this log lacks; see
// Importer.
func (s *Store) ImportAudit(ctx context.Context, recs []store.AuditRecord) (int, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return 0, err
	}
	defer s.lc.End()
	if err := s.batch.Flush(ctx); err != nil {
		return 0, err
	}
	written := 0
	for {
		head, rev, err := s.readHead(ctx)
		if err != nil {
			return written, fmt.Errorf("store: import audit: %w", err)
		}
		tail, anchor, err := store.AuditTail(recs, head)
		if err != nil {
			return written, err
		}
		if len(tail) == 0 {
			return written, nil
		}
		chunk := tail[:min(len(tail), auditChunk)]
		ops := make([]clientv3.Op, 0, len(chunk)+1)
		for _, r := range chunk {
			v, err := json.Marshal(r)
			if err != nil {
				return written, err
			}
			ops = append(ops, clientv3.OpPut(s.auditKey(r.Seq), string(v)))
		}
		last := chunk[len(chunk)-1]
		h, _ := json.Marshal(store.AuditHead{Seq: last.Seq, Hash: last.Hash})
		ops = append(ops, clientv3.OpPut(s.auditHeadKey(), string(h)))
		if anchor.Seq > 0 {
			a, _ := json.Marshal(anchor)
			ops = append(ops, clientv3.OpPut(s.auditAnchorKey(), string(a)))
		}
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.auditHeadKey()), "=", rev)).Then(ops...).Commit()
		if err != nil {
			return written, fmt.Errorf("store: import audit: %w", err)
		}
		if resp.Succeeded {
			written += len(chunk)
		}
	}
}
