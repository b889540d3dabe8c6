package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ExportPasswords returns every app password as stored (after flushing),
// sorted by user, then oldest first.
func (s *Etcd) ExportPasswords(ctx context.Context) ([]AppPassword, error) {
	release, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.flush(ctx); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.pwPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("store: export: %w", err)
	}
	out := make([]AppPassword, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var p AppPassword
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("store: export: decode %s: %w", kv.Key, err)
		}
		out = append(out, p)
	}
	sortExport(out)
	return out, nil
}

func sortExport(ps []AppPassword) {
	slices.SortFunc(ps, func(a, b AppPassword) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// ExportAudit returns the whole audit chain, oldest first, after flushing.
func (s *Etcd) ExportAudit(ctx context.Context) ([]AuditRecord, error) {
	release, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.flush(ctx); err != nil {
		return nil, err
	}
	var out []AuditRecord
	_, err = s.forEachAudit(ctx, func(key string, v []byte) error {
		var r AuditRecord
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
func (s *Etcd) ImportPasswords(ctx context.Context, ps []AppPassword) (int, error) {
	release, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	byUser := make(map[string][]AppPassword)
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
			var todo []AppPassword
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
				v, err := json.Marshal(p)
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
func (s *Etcd) ImportAudit(ctx context.Context, recs []AuditRecord) (int, error) {
	release, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	if err := s.flush(ctx); err != nil {
		return 0, err
	}
	written := 0
	for {
		head, rev, err := s.readHead(ctx)
		if err != nil {
			return written, fmt.Errorf("store: import audit: %w", err)
		}
		tail, err := auditTail(recs, head.Seq, head.Hash)
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
		h, _ := json.Marshal(auditHead{Seq: last.Seq, Hash: last.Hash})
		ops = append(ops, clientv3.OpPut(s.auditHeadKey(), string(h)))
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.auditHeadKey()), "=", rev)).Then(ops...).Commit()
		if err != nil {
			return written, fmt.Errorf("store: import audit: %w", err)
		}
		if resp.Succeeded {
			written += len(chunk)
		}
	}
}
