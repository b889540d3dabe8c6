// Package throttle limits repeated authentication failures (docs/contract.md §7) and
// implements auth.Throttler.
//
// Failures are counted in two tables:
//
//   - per client: one counter per IPv4 address, and per IPv6 /64 (one host
//     usually controls a whole /64, so counting single IPv6 addresses would
//     give an attacker 2^64 budgets);
//   - per user and source network: the user's failures are counted per /24
//     (IPv4) or /64 (IPv6) they came from, so an attacker hammering alice
//     from one network locks alice out of that network only, not out of her
//     own.
//
// Each counter is a fixed window that opens at its first failure and lasts
// Limits.Window: when the window has passed, the counter starts again from
// zero. A try is blocked when either counter has reached its maximum within
// its window. Blocked tries are not themselves failures (the secret is not
// checked), so a block ends at the latest one Window after the first failure.
// A successful login clears the user+network counter, not the client counter.
//
// Before a failure is answered the front-end waits (exponential backoff):
// the k-th failure in a window waits nothing for k ≤ FreeFailures (default 2),
// then BaseDelay (default 250ms) doubling with each further failure, capped at
// MaxDelay (default 5s): 0, 0, 250ms, 500ms, 1s, 2s, 4s, 5s, 5s, ... Blocked
// tries wait MaxDelay. The delay is computed from the larger of the two
// counters.
//
// Memory is bounded: each table holds at most Options.MaxEntries entries and
// evicts the least recently used one when full, so a flood of distinct
// addresses or names cannot exhaust memory. User names are kept only as a
// keyed 64-bit hash (random key per Throttle), so long names cost nothing.
package throttle

import (
	"hash/maphash"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Limits and Options.
const (
	DefaultWindow             = 10 * time.Minute
	DefaultMaxFailuresPerIP   = 20
	DefaultMaxFailuresPerUser = 10
	DefaultMaxEntries         = 100_000
	DefaultFreeFailures       = 2
	DefaultBaseDelay          = 250 * time.Millisecond
	DefaultMaxDelay           = 5 * time.Second
)

// Limits are the reloadable settings (config keys throttle.*).
type Limits struct {
	// Window is how long failures are remembered; zero means 10m.
	Window time.Duration
	// MaxFailuresPerIP blocks a client after that many failures within the
	// window; zero means 20, negative means no per-client limit.
	MaxFailuresPerIP int
	// MaxFailuresPerUser blocks a user from one source network after that many
	// failures from it within the window; zero means 10, negative means no
	// per-user limit.
	MaxFailuresPerUser int
}

func (l Limits) withDefaults() Limits {
	if l.Window <= 0 {
		l.Window = DefaultWindow
	}
	if l.MaxFailuresPerIP == 0 {
		l.MaxFailuresPerIP = DefaultMaxFailuresPerIP
	}
	if l.MaxFailuresPerUser == 0 {
		l.MaxFailuresPerUser = DefaultMaxFailuresPerUser
	}
	return l
}

// Options configure New. The zero value gives the documented defaults.
type Options struct {
	Limits
	// MaxEntries bounds each of the two tables; zero means 100,000. A full
	// table evicts its least recently used entry. An entry costs about 200
	// bytes, so a full default table uses about 20 MB.
	MaxEntries int
	// FreeFailures is how many failures in a window are answered without
	// delay; zero means 2, negative means none.
	FreeFailures int
	// BaseDelay is the delay of the first delayed failure, doubling after;
	// zero means 250ms, negative disables delays.
	BaseDelay time.Duration
	// MaxDelay caps the delay (and is the delay of blocked tries); zero
	// means 5s.
	MaxDelay time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// userKey identifies a user's failures from one source network.
type userKey struct {
	user uint64 // keyed hash of the normalised name
	net  netip.Prefix
}

// Throttle counts failures. It is safe for concurrent use.
type Throttle struct {
	limits atomic.Pointer[Limits]
	free   int
	base   time.Duration
	max    time.Duration
	now    func() time.Time
	seed   maphash.Seed

	mu    sync.Mutex
	ips   *lru[netip.Prefix]
	users *lru[userKey]
}

// New returns a Throttle.
func New(o Options) *Throttle {
	t := &Throttle{free: o.FreeFailures, base: o.BaseDelay, max: o.MaxDelay, now: o.Now, seed: maphash.MakeSeed()}
	if t.free == 0 {
		t.free = DefaultFreeFailures
	} else if t.free < 0 {
		t.free = 0
	}
	if t.base == 0 {
		t.base = DefaultBaseDelay
	}
	if t.max <= 0 {
		t.max = DefaultMaxDelay
	}
	if t.now == nil {
		t.now = time.Now
	}
	n := o.MaxEntries
	if n <= 0 {
		n = DefaultMaxEntries
	}
	n = min(n, math.MaxInt32) // slots are indexed by int32
	t.ips = newLRU[netip.Prefix](n)
	t.users = newLRU[userKey](n)
	t.SetLimits(o.Limits)
	return t
}

// SetLimits replaces the limits (on reload). Counters already held are kept
// and judged by the new limits from the next call on.
func (t *Throttle) SetLimits(l Limits) {
	l = l.withDefaults()
	t.limits.Store(&l)
}

// CurrentLimits returns the limits in force, defaults filled in.
func (t *Throttle) CurrentLimits() Limits { return *t.limits.Load() }

// Check reports whether a try from ip for user is refused outright
// (blocked), and how long to wait before answering it if it fails.
func (t *Throttle) Check(ip netip.Addr, user string) (delay time.Duration, blocked bool) {
	lim := t.limits.Load()
	now := t.now().UnixNano()
	client, hasClient := clientKey(ip)
	uk := t.userKey(ip, user)

	t.mu.Lock()
	var ipN uint32
	if hasClient {
		ipN = count(t.ips.get(client), now, lim.Window)
	}
	uN := count(t.users.get(uk), now, lim.Window)
	t.mu.Unlock()

	blocked = over(ipN, lim.MaxFailuresPerIP) || over(uN, lim.MaxFailuresPerUser)
	if blocked {
		if t.base < 0 {
			return 0, true
		}
		return t.max, true
	}
	return t.Delay(int(max(ipN, uN)) + 1), false
}

// Failure records a failed try.
func (t *Throttle) Failure(ip netip.Addr, user string) {
	lim := t.limits.Load()
	now := t.now().UnixNano()
	client, hasClient := clientKey(ip)
	uk := t.userKey(ip, user)

	t.mu.Lock()
	defer t.mu.Unlock()
	if hasClient {
		bump(t.ips.put(client), now, lim.Window)
	}
	bump(t.users.put(uk), now, lim.Window)
}

// Success records a successful login: it clears the user's failures from
// the client's network. The client's own counter is kept, so one good login
// does not reset a password-spraying client.
func (t *Throttle) Success(ip netip.Addr, user string) {
	uk := t.userKey(ip, user)
	t.mu.Lock()
	t.users.remove(uk)
	t.mu.Unlock()
}

// Len reports how many entries the client and user tables hold.
func (t *Throttle) Len() (clients, users int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ips.Len(), t.users.Len()
}

// Delay is the wait before answering the k-th failure (1-based) of a window.
func (t *Throttle) Delay(k int) time.Duration {
	if t.base < 0 || k <= t.free {
		return 0
	}
	d := t.base
	for i := t.free + 1; i < k; i++ {
		d *= 2
		if d >= t.max {
			return t.max
		}
	}
	return min(d, t.max)
}

func over(n uint32, limit int) bool { return limit > 0 && int64(n) >= int64(limit) }

// count is n's failure count at now; zero when absent or its window has passed.
func count[K comparable](n *node[K], now int64, window time.Duration) uint32 {
	if n == nil || now-n.start >= int64(window) {
		return 0
	}
	return n.count
}

// bump adds one failure to n, opening a new window if the old one passed.
func bump[K comparable](n *node[K], now int64, window time.Duration) {
	if n.count == 0 || now-n.start >= int64(window) {
		n.start, n.count = now, 0
	}
	if n.count < ^uint32(0) {
		n.count++
	}
}

// clientKey is the unit counted per client: the IPv4 address, or the IPv6 /64.
// ok is false for an invalid address (no per-client accounting).
func clientKey(ip netip.Addr) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p, true
}

// sourceNet is the network a user's failures are counted per: /24 or /64.
// The zero Prefix stands for an invalid address.
func sourceNet(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

func (t *Throttle) userKey(ip netip.Addr, user string) userKey {
	return userKey{user: maphash.String(t.seed, strings.ToLower(strings.TrimSpace(user))), net: sourceNet(ip)}
}
