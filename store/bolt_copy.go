package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

var (
	_ Exporter = (*Bolt)(nil)
	_ Importer = (*Bolt)(nil)
)

// KeyID identifies the HMAC key (not secret: a keyed hash of a constant).
func (b *Bolt) KeyID() string { return keyID(b.key) }

// ExportPasswords returns every app password as stored (after flushing),
// sorted by user, then oldest first.
func (b *Bolt) ExportPasswords(ctx context.Context) ([]AppPassword, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := b.flush(); err != nil {
		return nil, err
	}
	var out []AppPassword
	err = b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPasswords).ForEach(func(k, v []byte) error {
			var p AppPassword
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode %s: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: export: %w", err)
	}
	sortExport(out)
	return out, nil
}

// ExportAudit returns the whole audit chain, oldest first, after flushing.
func (b *Bolt) ExportAudit(ctx context.Context) ([]AuditRecord, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := b.flush(); err != nil {
		return nil, err
	}
	var out []AuditRecord
	err = b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var r AuditRecord
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
func (b *Bolt) ImportPasswords(ctx context.Context, ps []AppPassword) (int, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	b.wmu.Lock()
	defer b.wmu.Unlock()
	written := 0
	const batch = 5000
	for len(ps) > 0 {
		chunk := ps[:min(len(ps), batch)]
		ps = ps[len(chunk):]
		var added []AppPassword
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
			if _, ok, _ := decodeRecordValue(p); ok {
				b.rep.put(p)
			}
		}
		written += len(added)
	}
	return written, nil
}

// decodeRecordValue reports whether Verify could match p.
func decodeRecordValue(p AppPassword) (AppPassword, bool, error) {
	return p, p.HashAlg == HashHMACSHA256 && len(p.Hash) == 32, nil
}

// ImportAudit appends the part of a source chain this log lacks; see
// Importer.
func (b *Bolt) ImportAudit(ctx context.Context, recs []AuditRecord) (int, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	if err := b.flush(); err != nil {
		return 0, err
	}
	b.flushMu.Lock() // the chain head must not move under us
	defer b.flushMu.Unlock()
	written := 0
	err = b.update(func(tx *bolt.Tx) error {
		meta, audit := tx.Bucket(bucketMeta), tx.Bucket(bucketAudit)
		var seq uint64
		if v := meta.Get(metaAuditSeq); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		tail, err := auditTail(recs, seq, meta.Get(metaAuditHead))
		if err != nil {
			return err
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
