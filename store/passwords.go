package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// idEncoding spells IDs: 5 random bytes → 8 lower-case base32 characters.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return idEncoding.EncodeToString(b[:])
}

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

func getPassword(tx *bolt.Tx, id string) (AppPassword, bool, error) {
	v := tx.Bucket(bucketPasswords).Get([]byte(id))
	if v == nil {
		return AppPassword{}, false, nil
	}
	var p AppPassword
	if err := json.Unmarshal(v, &p); err != nil {
		return AppPassword{}, false, fmt.Errorf("store: decode app password %s: %w", id, err)
	}
	return p, true, nil
}

func putPassword(tx *bolt.Tx, p AppPassword) error {
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketPasswords).Put([]byte(p.ID), v)
}

// userPasswords loads user's passwords, oldest first.
func userPasswords(tx *bolt.Tx, user string) ([]AppPassword, error) {
	ids := userIDs(tx, user)
	out := make([]AppPassword, 0, len(ids))
	for _, id := range ids {
		p, ok, err := getPassword(tx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b AppPassword) int {
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
func (b *Bolt) Create(ctx context.Context, req CreateRequest) (AppPassword, string, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return AppPassword{}, "", err
	}
	defer release()
	user := NormalizeUser(req.User)
	name := strings.TrimSpace(req.Name)
	if user == "" {
		return AppPassword{}, "", errors.New("store: create: no user")
	}
	if strings.ContainsRune(user, 0) {
		return AppPassword{}, "", errors.New("store: create: user name contains NUL")
	}
	if name == "" {
		return AppPassword{}, "", errors.New("store: create: an app password needs a name (the device, e.g. \"Laptop\")")
	}
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	secret := Generate()
	p := AppPassword{
		User:     user,
		Name:     name,
		Created:  b.now().UTC(),
		Expires:  req.Expires,
		Scope:    slices.Clone(req.Scope),
		Networks: slices.Clone(req.Networks),
		HashAlg:  HashHMACSHA256,
		Hash:     b.hashSecret(secret),
	}
	// wmu makes the replica apply writes in commit order (see replica).
	b.wmu.Lock()
	defer b.wmu.Unlock()
	err = b.update(func(tx *bolt.Tx) error {
		existing, err := userPasswords(tx, user)
		if err != nil {
			return err
		}
		if len(existing) >= limit {
			return errorf(ErrLimit, "store: user %s already has %d app passwords (the limit is %d): revoke one first", user, len(existing), limit)
		}
		for _, e := range existing {
			if strings.EqualFold(e.Name, name) {
				return errorf(ErrNameTaken, "store: user %s already has an app password named %q (id %s)", user, e.Name, e.ID)
			}
		}
		index := tx.Bucket(bucketIndex)
		if index.Get(p.Hash) != nil {
			// 79 bits of entropy: never in practice, but never overwrite.
			return errors.New("store: create: generated secret collides with an existing one, try again")
		}
		pw := tx.Bucket(bucketPasswords)
		for {
			p.ID = newID()
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
		if errors.Is(err, ErrLimit) || errors.Is(err, ErrNameTaken) {
			return AppPassword{}, "", err
		}
		return AppPassword{}, "", fmt.Errorf("store: create: %w", err)
	}
	b.rep.put(p) // committed: Verify sees it before Create returns
	return p, secret, nil
}

// List returns user's app passwords, oldest first, with pending last uses
// merged in.
func (b *Bolt) List(ctx context.Context, user string) ([]AppPassword, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	var out []AppPassword
	err = b.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = userPasswords(tx, NormalizeUser(user))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	for i := range out {
		out[i].LastUse = b.mergeUse(out[i].ID, out[i].LastUse)
	}
	return out, nil
}

// Users returns every user with at least one app password, sorted.
func (b *Bolt) Users(ctx context.Context) ([]string, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	var users []string
	err = b.db.View(func(tx *bolt.Tx) error {
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
func (b *Bolt) Revoke(ctx context.Context, user string, sel Selector) ([]AppPassword, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	user = NormalizeUser(user)
	n := 0
	for _, set := range []bool{sel.ID != "", sel.Name != "", sel.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("store: revoke: set exactly one of id, name or all")
	}
	var revoked []AppPassword
	b.wmu.Lock()
	defer b.wmu.Unlock()
	err = b.update(func(tx *bolt.Tx) error {
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
			return ErrNotFound
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
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("store: revoke: %w", err)
	}
	// Committed: Verify stops accepting them before Revoke returns.
	for _, p := range revoked {
		b.rep.remove(p.Hash, p.ID)
	}
	b.pmu.Lock()
	for _, p := range revoked {
		delete(b.pendingUse, p.ID)
	}
	b.pmu.Unlock()
	return revoked, nil
}
