package bolt

import (
	"bytes"
	"fmt"
	"log/slog"

	"github.com/legate-proxy/legate/store"
	bolt "go.etcd.io/bbolt"
)

// loadReplica builds the replica in one pass over the passwords bucket. A
// record is loaded only if the index maps its hash to its id, which is what
// the index lookup of Verify required before there was a replica.
func loadReplica(db *bolt.DB, log *slog.Logger) (*store.Replica, error) {
	var ps []store.AppPassword
	err := db.View(func(tx *bolt.Tx) error {
		index := tx.Bucket(bucketIndex)
		return tx.Bucket(bucketPasswords).ForEach(func(id, v []byte) error {
			p, err := store.UnmarshalRecord(string(id), v)
			if err != nil {
				return err
			}
			if !store.Usable(p) {
				log.Warn("store: app password with an unknown hash cannot be used; revoke it", "id", string(id), "user", p.User, "hash_alg", p.HashAlg)
				return nil
			}
			if !bytes.Equal(index.Get(p.Hash), id) {
				log.Warn("store: app password missing from the hash index cannot be used; revoke it", "id", string(id), "user", p.User)
				return nil
			}
			ps = append(ps, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: load app passwords: %w", err)
	}
	r := store.NewReplica()
	r.Replace(ps)
	return r, nil
}
