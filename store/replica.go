package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// replica is the in-memory read copy of the passwords bucket that Verify
// uses, so a login costs no bbolt transaction and no JSON decoding. The
// bbolt buckets stay the durable source of truth: the replica is rebuilt from
// them by OpenBolt (loadReplica) and changed only after a write transaction
// that changes them has committed:
//
//   - Create and Revoke apply their change while holding Bolt.wmu across the
//     bbolt Update, so the replica sees writes in commit order (a Revoke
//     {All} cannot overtake the Create whose record it deletes).
//   - flush replaces the LastUse of records that are still present.
//
// Records in the map are immutable: a change swaps in a new *AppPassword,
// and readers copy (record.clone) before handing a record out, so neither the
// replica nor a caller can see the other's mutations.
//
// Memory: about 430 bytes per app password with no scope or networks
// (measured by TestReplicaMemoryPerPassword): the slot (AppPassword struct
// plus hash, 320-byte size class), one string holding ID, user and name, and
// the map slot. 50,000 app passwords cost about 22 MB; scope and networks
// add their slices.
type replica struct {
	mu     sync.RWMutex
	byHash map[[sha256.Size]byte]*AppPassword
}

func newReplica() *replica {
	return &replica{byHash: make(map[[sha256.Size]byte]*AppPassword)}
}

// get returns the record whose hash is h, or nil. The record must not be
// modified.
func (r *replica) get(h [sha256.Size]byte) *AppPassword {
	r.mu.RLock()
	p := r.byHash[h]
	r.mu.RUnlock()
	return p
}

// put stores a private copy of p, which must have a valid hash.
func (r *replica) put(p AppPassword) {
	c := compact(p)
	r.mu.Lock()
	r.byHash[[sha256.Size]byte(c.Hash)] = c
	r.mu.Unlock()
}

// remove deletes the record with this hash if it is still the one with id.
func (r *replica) remove(hash []byte, id string) {
	if len(hash) != sha256.Size {
		return
	}
	k := [sha256.Size]byte(hash)
	r.mu.Lock()
	if p, ok := r.byHash[k]; ok && p.ID == id {
		delete(r.byHash, k)
	}
	r.mu.Unlock()
}

// setLastUse records a flushed last use on the record with this hash, if it
// is still present (not revoked meanwhile) and the use is newer.
func (r *replica) setLastUse(hash []byte, id string, use LastUse) {
	if len(hash) != sha256.Size {
		return
	}
	k := [sha256.Size]byte(hash)
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byHash[k]
	if !ok || p.ID != id || !use.Time.After(p.LastUse.Time) {
		return
	}
	r.byHash[k] = withLastUse(p, use) // the old record may still be read
}

func (r *replica) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byHash)
}

// slot is how the replica allocates a record: the hash lives in the same
// allocation as the struct, so a lookup touches fewer cache lines.
type slot struct {
	p    AppPassword
	hash [sha256.Size]byte
}

// compact returns a private copy of p (which must have a valid hash) for the
// replica, in three allocations at most plus scope and networks: the slot,
// one string holding ID, User and Name, and HashAlg shares the constant's
// storage. Empty slices become nil.
func compact(p AppPassword) *AppPassword {
	s := &slot{p: p}
	copy(s.hash[:], p.Hash)
	s.p.Hash = s.hash[:]
	s.p.HashAlg = HashHMACSHA256
	blob := p.ID + p.User + p.Name
	i, j := len(p.ID), len(p.ID)+len(p.User)
	s.p.ID, s.p.User, s.p.Name = blob[:i], blob[i:j], blob[j:]
	s.p.Scope = cloneOrNil(p.Scope)
	s.p.Networks = cloneOrNil(p.Networks)
	return &s.p
}

// withLastUse is a new replica record like p (a replica record) but with use.
// Strings and slices are shared: they are never modified.
func withLastUse(p *AppPassword, use LastUse) *AppPassword {
	s := &slot{p: *p}
	copy(s.hash[:], p.Hash)
	s.p.Hash = s.hash[:]
	s.p.LastUse = use
	return &s.p
}

// clone is what leaves the replica: a copy whose slices the caller owns.
func (p *AppPassword) clone() AppPassword {
	c := *p
	c.Scope = slices.Clone(p.Scope)
	c.Networks = slices.Clone(p.Networks)
	c.Hash = slices.Clone(p.Hash)
	return c
}

func cloneOrNil[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// decodeRecord decodes one passwords-bucket value for the replica. ok is
// false for a record Verify could never match (another hash algorithm or a
// hash of the wrong size).
func decodeRecord(id, v []byte) (p AppPassword, ok bool, err error) {
	if err := json.Unmarshal(v, &p); err != nil {
		return AppPassword{}, false, fmt.Errorf("store: decode app password %s: %w", id, err)
	}
	return p, p.HashAlg == HashHMACSHA256 && len(p.Hash) == sha256.Size, nil
}

// loadReplica builds the replica in one pass over the passwords bucket. A
// record is loaded only if the index maps its hash to its id, which is what
// the index lookup of Verify required before there was a replica.
func loadReplica(db *bolt.DB, log *slog.Logger) (*replica, error) {
	r := newReplica()
	err := db.View(func(tx *bolt.Tx) error {
		index := tx.Bucket(bucketIndex)
		return tx.Bucket(bucketPasswords).ForEach(func(id, v []byte) error {
			p, ok, err := decodeRecord(id, v)
			if err != nil {
				return err
			}
			if !ok {
				log.Warn("store: app password with an unknown hash cannot be used; revoke it", "id", string(id), "user", p.User, "hash_alg", p.HashAlg)
				return nil
			}
			if !bytes.Equal(index.Get(p.Hash), id) {
				log.Warn("store: app password missing from the hash index cannot be used; revoke it", "id", string(id), "user", p.User)
				return nil
			}
			r.byHash[[sha256.Size]byte(p.Hash)] = compact(p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: load app passwords: %w", err)
	}
	return r, nil
}
