package bolt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/legate-proxy/legate/store"
)

// Test-only access to the internals of Store.

// WriteTxs is the number of committed read-write transactions (each one an
// fsync) since Open.
func (b *Store) WriteTxs() uint64 { return b.writeTxs.Load() }

// BoltWrites is bbolt's own count of page writes since open.
func (b *Store) BoltWrites() int64 {
	s := b.db.Stats()
	return s.TxStats.GetWrite()
}

// CheckIndex verifies that the passwords, index and byuser buckets agree:
// no dangling index or byuser entry, no password missing from either.
func (b *Store) CheckIndex() error {
	return b.db.View(func(tx *bolt.Tx) error {
		pw := tx.Bucket(bucketPasswords)
		idx := tx.Bucket(bucketIndex)
		by := tx.Bucket(bucketByUser)
		n := 0
		err := idx.ForEach(func(h, id []byte) error {
			n++
			v := pw.Get(id)
			if v == nil {
				return fmt.Errorf("index entry %x points to missing id %s", h, id)
			}
			p, err := store.UnmarshalRecord(string(id), v)
			if err != nil {
				return err
			}
			if !bytes.Equal(p.Hash, h) {
				return fmt.Errorf("index entry %x points to id %s whose hash is %x", h, id, p.Hash)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if got := pw.Stats().KeyN; got != n {
			return fmt.Errorf("%d passwords but %d index entries", got, n)
		}
		m := 0
		err = by.ForEach(func(k, _ []byte) error {
			m++
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("malformed byuser key %q", k)
			}
			v := pw.Get(k[i+1:])
			if v == nil {
				return fmt.Errorf("byuser entry %q points to a missing id", k)
			}
			p, err := store.UnmarshalRecord(string(k), v)
			if err != nil {
				return err
			}
			if p.User != string(k[:i]) {
				return fmt.Errorf("byuser entry %q points to a password of %s", k, p.User)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if m != n {
			return fmt.Errorf("%d byuser entries but %d index entries", m, n)
		}
		return nil
	})
}

// Cred is a user and a secret made by BulkLoad.
type Cred struct{ User, Secret, ID string }

// BulkLoad stores users × perUser app passwords in a few large transactions,
// bypassing Create's fsync per password. For benchmarks.
func (b *Store) BulkLoad(users, perUser int) ([]Cred, error) {
	var creds []Cred
	const batch = 5000
	var todo []store.AppPassword
	flush := func() error {
		b.wmu.Lock()
		defer b.wmu.Unlock()
		err := b.update(func(tx *bolt.Tx) error {
			for _, p := range todo {
				if err := putPassword(tx, p); err != nil {
					return err
				}
				if err := tx.Bucket(bucketIndex).Put(p.Hash, []byte(p.ID)); err != nil {
					return err
				}
				if err := tx.Bucket(bucketByUser).Put(userKey(p.User, p.ID), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			for _, p := range todo {
				b.rep.Put(p)
			}
		}
		todo = todo[:0]
		return err
	}
	now := time.Now().UTC()
	for u := range users {
		user := fmt.Sprintf("user%05d", u)
		for i := range perUser {
			secret := store.Generate()
			p := store.AppPassword{
				ID: store.NewID(), User: user, Name: fmt.Sprintf("device %d", i),
				Created: now, HashAlg: store.HashHMACSHA256, Hash: b.secrets.Hash(secret),
			}
			todo = append(todo, p)
			creds = append(creds, Cred{User: user, Secret: secret, ID: p.ID})
			if len(todo) == batch {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return creds, nil
}

var (
	jsonUnmarshal = json.Unmarshal
	jsonMarshal   = json.Marshal
)

// ReplicaLen is the number of app passwords in the in-memory replica.
func (b *Store) ReplicaLen() int { return b.rep.Len() }

// CheckReplica verifies that the in-memory replica holds exactly what a
// fresh load from the database would: the same hashes, ids and owners.
func (b *Store) CheckReplica() error {
	disk, err := loadReplica(b.db, b.log)
	if err != nil {
		return err
	}
	want := make(map[string]*store.AppPassword)
	disk.Each(func(p *store.AppPassword) { want[string(p.Hash)] = p })
	got := make(map[string]*store.AppPassword)
	b.rep.Each(func(p *store.AppPassword) { got[string(p.Hash)] = p })
	if len(want) != len(got) {
		return fmt.Errorf("replica has %d app passwords, database %d", len(got), len(want))
	}
	for h, w := range want {
		g, ok := got[h]
		if !ok {
			return fmt.Errorf("app password %s of %s missing from the replica", w.ID, w.User)
		}
		if g.ID != w.ID || g.User != w.User || g.Name != w.Name {
			return fmt.Errorf("replica record %s/%s/%s differs from database %s/%s/%s", g.ID, g.User, g.Name, w.ID, w.User, w.Name)
		}
	}
	return nil
}
