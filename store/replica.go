package store

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// Replica is the in-memory read copy of the stored app passwords that Verify
// uses, so a login costs no database read and no JSON decoding. The backend
// stays the durable source of truth: the replica is rebuilt from it on open
// and changed only after a write that changes it has committed, in commit
// order (store/bolt holds its write lock across the transaction and the
// replica update; store/etcd applies its watch in revision order). A flush
// replaces the LastUse of records that are still present.
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
type Replica struct {
	mu     sync.RWMutex
	byHash map[[sha256.Size]byte]*AppPassword
}

// NewReplica returns an empty replica.
func NewReplica() *Replica {
	return &Replica{byHash: make(map[[sha256.Size]byte]*AppPassword)}
}

// Get returns the record whose hash is h, or nil. The record must not be
// modified.
func (r *Replica) Get(h [sha256.Size]byte) *AppPassword {
	r.mu.RLock()
	p := r.byHash[h]
	r.mu.RUnlock()
	return p
}

// Put stores a private copy of p, which must have a valid hash.
func (r *Replica) Put(p AppPassword) {
	c := compact(p)
	r.mu.Lock()
	r.byHash[[sha256.Size]byte(c.Hash)] = c
	r.mu.Unlock()
}

// Remove deletes the record with this hash if it is still the one with id.
func (r *Replica) Remove(hash []byte, id string) {
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

// SetLastUse records a flushed last use on the record with this hash, if it
// is still present (not revoked meanwhile) and the use is newer.
func (r *Replica) SetLastUse(hash []byte, id string, use LastUse) {
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

// Len is the number of records.
func (r *Replica) Len() int {
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

// Clone is what leaves the replica: a copy whose slices the caller owns.
func (p *AppPassword) Clone() AppPassword {
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

// Replace swaps the whole content for ps (each with a valid hash).
func (r *Replica) Replace(ps []AppPassword) {
	m := make(map[[sha256.Size]byte]*AppPassword, len(ps))
	for _, p := range ps {
		c := compact(p)
		m[[sha256.Size]byte(c.Hash)] = c
	}
	r.mu.Lock()
	r.byHash = m
	r.mu.Unlock()
}

// Each calls fn for every record (not to be modified) under the read lock.
func (r *Replica) Each(fn func(p *AppPassword)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, p := range r.byHash {
		fn(p)
	}
}

// Usable reports whether Verify could ever match p: the hash algorithm is
// HMAC-SHA-256 and the hash has its size.
func Usable(p AppPassword) bool {
	return p.HashAlg == HashHMACSHA256 && len(p.Hash) == sha256.Size
}

// storedPassword is the stored encoding of an AppPassword: its JSON fields
// plus the keyed hash, which AppPassword's own JSON leaves out so that no
// view of an app password (CLI, admin socket, portal) can carry it.
type storedPassword struct {
	AppPassword
	HashAlg string `json:"hash_alg"`
	Hash    []byte `json:"hash"`
}

// MarshalRecord is the stored encoding of p, hash included.
func MarshalRecord(p AppPassword) ([]byte, error) {
	return json.Marshal(storedPassword{AppPassword: p, HashAlg: p.HashAlg, Hash: p.Hash})
}

// UnmarshalRecord decodes what MarshalRecord made; id names the record in
// the error.
func UnmarshalRecord(id string, v []byte) (AppPassword, error) {
	var sp storedPassword
	if err := json.Unmarshal(v, &sp); err != nil {
		return AppPassword{}, fmt.Errorf("store: decode app password %s: %w", id, err)
	}
	p := sp.AppPassword
	p.HashAlg, p.Hash = sp.HashAlg, sp.Hash
	return p, nil
}

// ByIDs returns the records whose ids are in ids (copies, keyed by id), in
// one pass under the read lock: the session sweep reads the app passwords
// of every live session from memory instead of listing each user's.
func (r *Replica) ByIDs(ids map[string]struct{}) map[string]AppPassword {
	out := make(map[string]AppPassword, len(ids))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, p := range r.byHash {
		if _, ok := ids[p.ID]; ok {
			out[p.ID] = *p
		}
	}
	return out
}
