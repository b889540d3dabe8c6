package oauth

import (
	"context"
	"sync"
	"time"
)

// Observer learns about token fetches and cache hits (metrics). Its methods
// must not block.
type Observer interface {
	TokenFetched(source string, took time.Duration, err error)
	TokenCacheHit(source string)
}

// Cache hands out tokens from a Fetcher, one per subject (or one for all for
// app-only fetchers), reused until shortly before they expire. Concurrent
// requests for a subject whose token is missing or due share one fetch. When
// the endpoint fails, a token that has not yet expired is still handed out.
// Tokens live in memory only. The zero value is not usable; use NewCache.
type Cache struct {
	name    string
	fetch   Fetcher
	obs     Observer
	now     func() time.Time
	maxSize int

	mu      sync.Mutex
	entries map[string]*entry
	lastErr error
}

type entry struct {
	tok     Token
	refresh time.Time // fetch again from here on
	fetched time.Time
	// flight is non-nil while a fetch runs; closed when it ends.
	flight chan struct{}
	err    error // the last fetch's error, valid after flight closes
}

// CacheOptions configure a Cache.
type CacheOptions struct {
	// Name names the source in errors, metrics and readiness
	// ("upstream.imap").
	Name string
	// Observer may be nil.
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxSubjects bounds the number of cached subjects; zero means 100,000.
	// Past it, expired entries are dropped, then the cache starts over.
	MaxSubjects int
}

// NewCache returns a cache in front of f.
func NewCache(f Fetcher, o CacheOptions) *Cache {
	c := &Cache{name: o.Name, fetch: f, obs: o.Observer, now: o.Now, maxSize: o.MaxSubjects, entries: make(map[string]*entry)}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxSize <= 0 {
		c.maxSize = 100_000
	}
	return c
}

// Name returns the source's name.
func (c *Cache) Name() string { return c.name }

// skew is how long before expiry a token is fetched again: a fifth of its
// life, at most a minute.
func skew(life time.Duration) time.Duration {
	return min(life/5, time.Minute)
}

// Token returns a usable access token for subject.
func (c *Cache) Token(ctx context.Context, subject string) (string, error) {
	key := subject
	if !c.fetch.PerSubject() {
		key = ""
	}
	for {
		c.mu.Lock()
		e := c.entries[key]
		now := c.now()
		if e != nil && e.flight == nil && e.tok.Access != "" && now.Before(e.refresh) {
			tok := e.tok.Access
			c.mu.Unlock()
			if c.obs != nil {
				c.obs.TokenCacheHit(c.name)
			}
			return tok, nil
		}
		if e != nil && e.flight != nil {
			// Someone is fetching: a still-valid token serves meanwhile.
			if e.tok.Access != "" && now.Before(e.tok.Expiry) {
				tok := e.tok.Access
				c.mu.Unlock()
				return tok, nil
			}
			fl := e.flight
			c.mu.Unlock()
			select {
			case <-fl:
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		if e == nil {
			if len(c.entries) >= c.maxSize {
				c.prune(now)
			}
			e = &entry{}
			c.entries[key] = e
		}
		e.flight = make(chan struct{})
		c.mu.Unlock()
		return c.run(ctx, key, subject, e)
	}
}

// run fetches for e (whose flight the caller owns) and wakes the waiters.
func (c *Cache) run(ctx context.Context, key, subject string, e *entry) (string, error) {
	// The fetch must not die with one caller's context while others wait
	// on it, but stays bounded.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	start := c.now()
	tok, err := c.fetch.Fetch(fctx, subject)
	cancel()
	took := c.now().Sub(start)
	if c.obs != nil {
		c.obs.TokenFetched(c.name, took, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.lastErr = err
	if err == nil {
		e.tok = tok
		e.fetched = now
		e.refresh = tok.Expiry.Add(-skew(tok.Expiry.Sub(now)))
	}
	e.err = err
	close(e.flight)
	e.flight = nil
	if err == nil {
		return tok.Access, nil
	}
	if e.tok.Access != "" && now.Before(e.tok.Expiry) {
		return e.tok.Access, nil
	}
	if e.tok.Access == "" {
		delete(c.entries, key)
	}
	return "", err
}

// prune drops expired entries, or all of them when none has expired. The
// caller holds c.mu.
func (c *Cache) prune(now time.Time) {
	for k, e := range c.entries {
		if e.flight == nil && !now.Before(e.tok.Expiry) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) >= c.maxSize {
		for k, e := range c.entries {
			if e.flight == nil {
				delete(c.entries, k)
			}
		}
	}
}

// Err returns the last fetch's error, nil after a success: readiness names
// a token source whose endpoint refuses Legate.
func (c *Cache) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Forget drops the cached token for subject, so that the next Token fetches
// a new one (after the upstream refused a token it had not expired). An
// app-only token is shared by every mailbox and is more often refused for
// a missing per-mailbox grant than for itself: it is dropped at most once
// a minute, so a device retrying a refused login cannot drive the token
// endpoint.
func (c *Cache) Forget(subject string) {
	key := subject
	if !c.fetch.PerSubject() {
		key = ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || e.flight != nil {
		return
	}
	if key == "" && c.now().Sub(e.fetched) < time.Minute {
		return
	}
	delete(c.entries, key)
}

// PerSubject reports whether tokens differ per subject.
func (c *Cache) PerSubject() bool { return c.fetch.PerSubject() }
