package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/legate-proxy/legate/store"
	bolt "go.etcd.io/bbolt"
)

func userKey(user, id string) []byte {
	k := make([]byte, 0, len(user)+1+len(id))
	k = append(k, user...)
	k = append(k, 0)
	return append(k, id...)
}

func userPrefix(user string) []byte { return append([]byte(user), 0) }

// userIDs returns the ids of user's passwords via the byuser prefix.
func userIDs(tx *bolt.Tx, user string) []string {
	var ids []string
	prefix := userPrefix(user)
	c := tx.Bucket(bucketByUser).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	return ids
}

func getPassword(tx *bolt.Tx, id string) (store.AppPassword, bool, error) {
	v := tx.Bucket(bucketPasswords).Get([]byte(id))
	if v == nil {
		return store.AppPassword{}, false, nil
	}
	p, err := store.UnmarshalRecord(id, v)
	if err != nil {
		return store.AppPassword{}, false, err
	}
	return p, true, nil
}

func putPassword(tx *bolt.Tx, p store.AppPassword) error {
	v, err := store.MarshalRecord(p)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketPasswords).Put([]byte(p.ID), v)
}

// userPasswords loads user's passwords, oldest first.
func userPasswords(tx *bolt.Tx, user string) ([]store.AppPassword, error) {
	ids := userIDs(tx, user)
	out := make([]store.AppPassword, 0, len(ids))
	for _, id := range ids {
		p, ok, err := getPassword(tx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b store.AppPassword) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Create generates an app password and stores its keyed hash. The limit and
// name checks and the writes happen in one transaction, which is fsynced
// before Create returns: a returned secret survives a crash.
func (b *Store) Create(ctx context.Context, req store.CreateRequest) (store.AppPassword, string, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return store.AppPassword{}, "", err
	}
	defer b.lc.End()
	user := store.NormalizeUser(req.User)
	name := strings.TrimSpace(req.Name)
	if user == "" {
		return store.AppPassword{}, "", errors.New("store: create: no user")
	}
	if strings.ContainsRune(user, 0) {
		return store.AppPassword{}, "", errors.New("store: create: user name contains NUL")
	}
	if name == "" {
		return store.AppPassword{}, "", errors.New("store: create: an app password needs a name (the device, e.g. \"Laptop\")")
	}
	limit := req.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	secret := store.Generate()
	p := store.AppPassword{
		User:     user,
		Name:     name,
		Created:  b.now().UTC(),
		Expires:  req.Expires,
		Scope:    slices.Clone(req.Scope),
		Networks: slices.Clone(req.Networks),
		HashAlg:  store.HashHMACSHA256,
		Hash:     b.secrets.Hash(secret),
	}
	// wmu makes the replica apply writes in commit order (see replica).
	b.wmu.Lock()
	defer b.wmu.Unlock()
	err := b.update(func(tx *bolt.Tx) error {
		existing, err := userPasswords(tx, user)
		if err != nil {
			return err
		}
		if len(existing) >= limit {
			return store.Errorf(store.ErrLimit, "store: user %s already has %d app passwords (the limit is %d): revoke one first", user, len(existing), limit)
		}
		for _, e := range existing {
			if strings.EqualFold(e.Name, name) {
				return store.Errorf(store.ErrNameTaken, "store: user %s already has an app password named %q (id %s)", user, e.Name, e.ID)
			}
		}
		index := tx.Bucket(bucketIndex)
		if index.Get(p.Hash) != nil {
			// 79 bits of entropy: never in practice, but never overwrite.
			return errors.New("store: create: generated secret collides with an existing one, try again")
		}
		pw := tx.Bucket(bucketPasswords)
		for {
			p.ID = store.NewID()
			if pw.Get([]byte(p.ID)) == nil {
				break
			}
		}
		if err := putPassword(tx, p); err != nil {
			return err
		}
		if err := index.Put(p.Hash, []byte(p.ID)); err != nil {
			return err
		}
		return tx.Bucket(bucketByUser).Put(userKey(user, p.ID), nil)
	})
	if err != nil {
		if errors.Is(err, store.ErrLimit) || errors.Is(err, store.ErrNameTaken) {
			return store.AppPassword{}, "", err
		}
		return store.AppPassword{}, "", fmt.Errorf("store: create: %w", err)
	}
	b.rep.Put(p) // committed: Verify sees it before Create returns
	return p, secret, nil
}

// List returns user's app passwords, oldest first, with pending last uses
// merged in.
func (b *Store) List(ctx context.Context, user string) ([]store.AppPassword, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer b.lc.End()
	var out []store.AppPassword
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = userPasswords(tx, store.NormalizeUser(user))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	for i := range out {
		out[i].LastUse = b.batch.MergeUse(out[i].ID, out[i].LastUse)
	}
	return out, nil
}

// Users returns every user with at least one app password, sorted.
func (b *Store) Users(ctx context.Context) ([]string, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer b.lc.End()
	var users []string
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketByUser).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("store: users: malformed byuser key %q", k)
			}
			users = append(users, string(k[:i]))
			// Skip the rest of this user: seek past user\x00… to user\x01.
			next := append(bytes.Clone(k[:i]), 1)
			k, _ = c.Seek(next)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return users, nil
}

// Revoke deletes the selected app passwords of user together with their
// index and byuser entries, in one transaction.
func (b *Store) Revoke(ctx context.Context, user string, sel store.Selector) ([]store.AppPassword, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer b.lc.End()
	user = store.NormalizeUser(user)
	n := 0
	for _, set := range []bool{sel.ID != "", sel.Name != "", sel.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("store: revoke: set exactly one of id, name or all")
	}
	var revoked []store.AppPassword
	b.wmu.Lock()
	defer b.wmu.Unlock()
	err := b.update(func(tx *bolt.Tx) error {
		all, err := userPasswords(tx, user)
		if err != nil {
			return err
		}
		for _, p := range all {
			switch {
			case sel.All,
				sel.ID != "" && p.ID == strings.ToLower(strings.TrimSpace(sel.ID)),
				sel.Name != "" && strings.EqualFold(p.Name, strings.TrimSpace(sel.Name)):
				revoked = append(revoked, p)
			}
		}
		if len(revoked) == 0 && !sel.All {
			return store.ErrNotFound
		}
		for _, p := range revoked {
			if err := tx.Bucket(bucketPasswords).Delete([]byte(p.ID)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketIndex).Delete(p.Hash); err != nil {
				return err
			}
			if err := tx.Bucket(bucketByUser).Delete(userKey(user, p.ID)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("store: revoke: %w", err)
	}
	// Committed: Verify stops accepting them before Revoke returns.
	for _, p := range revoked {
		b.rep.Remove(p.Hash, p.ID)
	}
	for _, p := range revoked {
		b.batch.Forget(p.ID)
	}
	return revoked, nil
}
