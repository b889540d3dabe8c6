package directory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
)

type countingDir struct {
	mu    sync.Mutex
	calls map[string]int
	users map[string]*directory.User
	err   error
}

func (c *countingDir) Lookup(_ context.Context, login string) (*directory.User, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[login]++
	if c.err != nil {
		return nil, c.err
	}
	if u, ok := c.users[login]; ok {
		v := *u
		return &v, nil
	}
	return nil, directory.ErrNoSuchUser
}

func (c *countingDir) CheckPassword(context.Context, *directory.User, string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["#check"]++
	return nil
}

func (c *countingDir) count(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[k]
}

func TestCachedTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	d := &countingDir{calls: map[string]int{}, users: map[string]*directory.User{"alice": {Name: "alice"}}}
	c := directory.NewCached(d, time.Minute, clock)

	steps := []struct {
		advance   time.Duration
		login     string
		wantCalls int
		wantErr   error
	}{
		{0, "alice", 1, nil},
		{30 * time.Second, "alice", 1, nil},
		{29 * time.Second, "alice", 1, nil},
		{2 * time.Second, "alice", 2, nil}, // 61s after the first: expired
		{0, "nobody", 1, directory.ErrNoSuchUser},
		{5 * time.Second, "nobody", 1, directory.ErrNoSuchUser}, // negative TTL 6s
		{2 * time.Second, "nobody", 2, directory.ErrNoSuchUser},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		_, err := c.Lookup(ctx, st.login)
		if !errors.Is(err, st.wantErr) && err != st.wantErr {
			t.Errorf("step %d: err = %v, want %v", i, err, st.wantErr)
		}
		if got := d.count(st.login); got != st.wantCalls {
			t.Errorf("step %d: %s lookups = %d, want %d", i, st.login, got, st.wantCalls)
		}
	}
	// The cache hands out copies.
	u, _ := c.Lookup(ctx, "alice")
	u.Name = "mallory"
	if u2, _ := c.Lookup(ctx, "alice"); u2.Name != "alice" {
		t.Errorf("cached user changed through a returned copy: %q", u2.Name)
	}
	if err := c.CheckPassword(ctx, u, "x"); err != nil || d.count("#check") != 1 {
		t.Errorf("CheckPassword not passed through: err %v calls %d", err, d.count("#check"))
	}
	_ = c.CheckPassword(ctx, u, "x")
	if got := d.count("#check"); got != 2 {
		t.Errorf("CheckPassword calls = %d, want 2 (never cached)", got)
	}
}

func TestCachedUnavailableNotCached(t *testing.T) {
	ctx := context.Background()
	d := &countingDir{calls: map[string]int{}, err: fmt.Errorf("%w: down", directory.ErrUnavailable)}
	c := directory.NewCached(d, time.Minute, nil)
	for i := 1; i <= 3; i++ {
		if _, err := c.Lookup(ctx, "alice"); !errors.Is(err, directory.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if got := d.count("alice"); got != i {
			t.Errorf("lookups = %d, want %d (unavailable is never cached)", got, i)
		}
	}
}

func TestCachedBounded(t *testing.T) {
	ctx := context.Background()
	d := &countingDir{calls: map[string]int{}, users: map[string]*directory.User{}}
	for i := range directory.MaxCachedEntries + 50 {
		n := fmt.Sprintf("u%d", i)
		d.users[n] = &directory.User{Name: n}
	}
	c := directory.NewCached(d, time.Minute, nil)
	for i := range directory.MaxCachedEntries + 50 {
		_, _ = c.Lookup(ctx, fmt.Sprintf("u%d", i))
	}
	if got := c.Len(); got != directory.MaxCachedEntries {
		t.Errorf("Len = %d, want %d", got, directory.MaxCachedEntries)
	}
	_, _ = c.Lookup(ctx, "u0") // evicted first: asked again
	if got := d.count("u0"); got != 2 {
		t.Errorf("u0 lookups = %d, want 2 after eviction", got)
	}
}
