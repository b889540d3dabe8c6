package directory

import (
	"container/list"
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// Cached wraps a Directory and remembers Lookup answers for a while
// (directory.cache_ttl), so a login does not cost a directory round trip,
// while a user disabled upstream is still refused within the TTL.
//
// Found users are kept for the TTL; "no such user" answers for a tenth of it
// (at most 10s), so a newly created account works quickly; ErrUnavailable and
// other errors are never cached. CheckPassword is never cached. The cache
// holds at most MaxCachedEntries logins, evicting the least recently used.
type Cached struct {
	d   Directory
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recent first
	byKey map[string]*list.Element
}

// MaxCachedEntries bounds the number of logins a Cached remembers.
const MaxCachedEntries = 10000

type cacheEntry struct {
	key     string
	user    *User
	err     error
	expires time.Time
}

var _ Directory = (*Cached)(nil)

// NewCached wraps d. ttl zero means 60s; now nil means time.Now.
func NewCached(d Directory, ttl time.Duration, now func() time.Time) *Cached {
	if ttl <= 0 {
		ttl = 60 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Cached{d: d, ttl: ttl, now: now, lru: list.New(), byKey: make(map[string]*list.Element)}
}

// Lookup implements Directory.
func (c *Cached) Lookup(ctx context.Context, login string) (*User, error) {
	key := strings.ToLower(strings.TrimSpace(login))
	now := c.now()
	c.mu.Lock()
	if el, ok := c.byKey[key]; ok {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			return copyUser(e.user), e.err
		}
		c.lru.Remove(el)
		delete(c.byKey, key)
	}
	c.mu.Unlock()

	u, err := c.d.Lookup(ctx, login)
	var ttl time.Duration
	switch {
	case err == nil:
		ttl = c.ttl
	case errors.Is(err, ErrNoSuchUser) && !errors.Is(err, ErrUnavailable):
		ttl = min(c.ttl/10, 10*time.Second)
	}
	if ttl > 0 {
		c.put(&cacheEntry{key: key, user: copyUser(u), err: err, expires: now.Add(ttl)})
	}
	return u, err
}

func (c *Cached) put(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[e.key]; ok {
		c.lru.Remove(el)
	}
	c.byKey[e.key] = c.lru.PushFront(e)
	for c.lru.Len() > MaxCachedEntries {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byKey, old.Value.(*cacheEntry).key)
	}
}

// Len returns the number of cached logins.
func (c *Cached) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// CheckPassword implements Directory; it is never cached.
func (c *Cached) CheckPassword(ctx context.Context, u *User, password string) error {
	return c.d.CheckPassword(ctx, u, password)
}

func copyUser(u *User) *User {
	if u == nil {
		return nil
	}
	v := *u
	v.Addresses = append([]string(nil), u.Addresses...)
	v.Groups = append([]string(nil), u.Groups...)
	return &v
}

// Close releases the wrapped directory's connections, if it holds any.
func (c *Cached) Close() error {
	if cl, ok := c.d.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}
