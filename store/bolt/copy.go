package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/legate-proxy/legate/store"
	bolt "go.etcd.io/bbolt"
)

var (
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

// KeyID identifies the HMAC key (not secret: a keyed hash of a constant).
func (b *Store) KeyID() string { return b.secrets.KeyID() }

// ExportPasswords returns every app password as stored (after flushing),
// sorted by user, then oldest first.
func (b *Store) ExportPasswords(ctx context.Context) ([]store.AppPassword, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer b.lc.End()
	if err := b.batch.Flush(ctx); err != nil {
		return nil, err
	}
	var out []store.AppPassword
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPasswords).ForEach(func(k, v []byte) error {
			p, err := store.UnmarshalRecord(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: export: %w", err)
	}
	store.SortExport(out)
	return out, nil
}

// ExportAudit returns the whole audit chain, oldest first, after flushing.
func (b *Store) ExportAudit(ctx context.Context) ([]store.AuditRecord, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer b.lc.End()
	if err := b.batch.Flush(ctx); err != nil {
		return nil, err
	}
	var out []store.AuditRecord
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var r store.AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode audit record %x: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: export audit: %w", err)
	}
	return out, nil
}

// ImportPasswords stores records as they are; see Importer.
func (b *Store) ImportPasswords(ctx context.Context, ps []store.AppPassword) (int, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return 0, err
	}
	defer b.lc.End()
	b.wmu.Lock()
	defer b.wmu.Unlock()
	written := 0
	const batch = 5000
	for len(ps) > 0 {
		chunk := ps[:min(len(ps), batch)]
		ps = ps[len(chunk):]
		var added []store.AppPassword
		err := b.update(func(tx *bolt.Tx) error {
			added = added[:0]
			index := tx.Bucket(bucketIndex)
			for _, p := range chunk {
				if p.User == "" || p.ID == "" || strings.ContainsRune(p.User, 0) {
					return fmt.Errorf("record %q of %q has no valid id or user", p.ID, p.User)
				}
				old, ok, err := getPassword(tx, p.ID)
				if err != nil {
					return err
				}
				if ok {
					if !bytes.Equal(old.Hash, p.Hash) {
						return fmt.Errorf("id %s of %s exists with another secret", p.ID, p.User)
					}
					continue
				}
				if id := index.Get(p.Hash); id != nil {
					return fmt.Errorf("the secret of %s is already stored as id %s", p.ID, id)
				}
				if err := putPassword(tx, p); err != nil {
					return err
				}
				if err := index.Put(p.Hash, []byte(p.ID)); err != nil {
					return err
				}
				if err := tx.Bucket(bucketByUser).Put(userKey(p.User, p.ID), nil); err != nil {
					return err
				}
				added = append(added, p)
			}
			return nil
		})
		if err != nil {
			return written, fmt.Errorf("store: import: %w", err)
		}
		for _, p := range added {
			if store.Usable(p) {
				b.rep.Put(p)
			}
		}
		written += len(added)
	}
	return written, nil
}

// ImportAudit appends the part of a source chain this log lacks; see
// Importer.
func (b *Store) ImportAudit(ctx context.Context, recs []store.AuditRecord) (int, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return 0, err
	}
	defer b.lc.End()
	if err := b.batch.Flush(ctx); err != nil {
		return 0, err
	}
	b.flushMu.Lock() // the chain head must not move under us
	defer b.flushMu.Unlock()
	written := 0
	err := b.update(func(tx *bolt.Tx) error {
		meta, audit := tx.Bucket(bucketMeta), tx.Bucket(bucketAudit)
		head, _, err := readHead(tx)
		if err != nil {
			return err
		}
		tail, anchor, err := store.AuditTail(recs, head)
		if err != nil {
			return err
		}
		if anchor.Seq > 0 {
			v, err := json.Marshal(anchor)
			if err != nil {
				return err
			}
			if err := meta.Put(metaAuditAnchor, v); err != nil {
				return err
			}
		}
		for _, r := range tail {
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := audit.Put(seqKey(r.Seq), v); err != nil {
				return err
			}
		}
		if len(tail) == 0 {
			return nil
		}
		last := tail[len(tail)-1]
		written = len(tail)
		if err := meta.Put(metaAuditSeq, seqKey(last.Seq)); err != nil {
			return err
		}
		return meta.Put(metaAuditHead, last.Hash)
	})
	if err != nil {
		return 0, fmt.Errorf("store: import audit: %w", err)
	}
	return written, nil
}
