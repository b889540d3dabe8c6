package throttle

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
)

var _ auth.Throttler = (*Throttle)(nil)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// fail records n failures.
func fail(th *Throttle, addr, user string, n int) {
	for range n {
		th.Failure(ip(addr), user)
	}
}

func TestDefaults(t *testing.T) {
	th := New(Options{})
	got := th.CurrentLimits()
	want := Limits{Window: 10 * time.Minute, MaxFailuresPerIP: 20, MaxFailuresPerUser: 10}
	if got != want {
		t.Fatalf("limits: got %+v, want %+v", got, want)
	}
}

func TestDelaysGrowAndCap(t *testing.T) {
	th := New(Options{Limits: Limits{MaxFailuresPerIP: 100, MaxFailuresPerUser: 100}, Now: newClock().Now})
	want := []time.Duration{0, 0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		// Check is asked before the (i+1)-th failure.
		d, blocked := th.Check(ip("192.0.2.1"), "alice")
		if blocked {
			t.Fatalf("failure %d: blocked, want not blocked", i+1)
		}
		if d != w {
			t.Errorf("failure %d: got delay %v, want %v", i+1, d, w)
		}
		th.Failure(ip("192.0.2.1"), "alice")
	}
	if got := th.Delay(1000); got != 5*time.Second {
		t.Errorf("Delay(1000): got %v, want 5s", got)
	}
}

func TestDelayOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		k    int
		want time.Duration
	}{
		{"no free failures", Options{FreeFailures: -1}, 1, 250 * time.Millisecond},
		{"custom base", Options{BaseDelay: 10 * time.Millisecond}, 4, 20 * time.Millisecond},
		{"custom cap", Options{MaxDelay: 300 * time.Millisecond}, 5, 300 * time.Millisecond},
		{"disabled", Options{BaseDelay: -1}, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.opts).Delay(tt.k); got != tt.want {
				t.Errorf("Delay(%d): got %v, want %v", tt.k, got, tt.want)
			}
		})
	}
}

func TestBlocking(t *testing.T) {
	type try struct {
		ip, user    string
		wantBlocked bool
	}
	tests := []struct {
		name   string
		limits Limits
		setup  func(th *Throttle)
		tries  []try
	}{
		{
			name:   "user hammered from one network is blocked there only",
			limits: Limits{MaxFailuresPerIP: 1000},
			setup: func(th *Throttle) {
				for i := range 10 {
					fail(th, fmt.Sprintf("203.0.113.%d", i+1), "alice", 1)
				}
			},
			tries: []try{
				{"203.0.113.200", "alice", true},
				{"203.0.113.200", "ALICE ", true}, // names are normalised
				{"::ffff:203.0.113.9", "alice", true},
				{"198.51.100.7", "alice", false},
				{"203.0.113.200", "bob", false},
			},
		},
		{
			name:   "below the user limit",
			limits: Limits{},
			setup:  func(th *Throttle) { fail(th, "203.0.113.5", "alice", 9) },
			tries:  []try{{"203.0.113.5", "alice", false}},
		},
		{
			name:   "per-IP limit across many users",
			limits: Limits{},
			setup: func(th *Throttle) {
				for i := range 20 {
					fail(th, "192.0.2.10", fmt.Sprintf("user%d", i), 1)
				}
			},
			tries: []try{
				{"192.0.2.10", "someone-new", true},
				{"::ffff:192.0.2.10", "someone-new", true},
				{"192.0.2.11", "someone-new", false},
				{"192.0.2.11", "user1", false},
			},
		},
		{
			name:   "IPv6 clients are counted per /64",
			limits: Limits{MaxFailuresPerIP: 3, MaxFailuresPerUser: 100},
			setup: func(th *Throttle) {
				fail(th, "2001:db8:1:2::1", "a", 1)
				fail(th, "2001:db8:1:2::2", "b", 1)
				fail(th, "2001:db8:1:2:ffff::3", "c", 1)
			},
			tries: []try{
				{"2001:db8:1:2::99", "d", true},
				{"2001:db8:1:3::1", "d", false},
			},
		},
		{
			name:   "IPv6 user counted per /64",
			limits: Limits{MaxFailuresPerIP: 1000, MaxFailuresPerUser: 2},
			setup:  func(th *Throttle) { fail(th, "2001:db8:1:2::1", "alice", 2) },
			tries: []try{
				{"2001:db8:1:2::77", "alice", true},
				{"2001:db8:1:2::77%eth0", "alice", true}, // zones do not matter
				{"2001:db8:9::1", "alice", false},
			},
		},
		{
			name:   "negative limit disables it",
			limits: Limits{MaxFailuresPerIP: -1, MaxFailuresPerUser: -1},
			setup:  func(th *Throttle) { fail(th, "192.0.2.1", "alice", 500) },
			tries:  []try{{"192.0.2.1", "alice", false}},
		},
		{
			name:   "success clears the user counter but not the IP counter",
			limits: Limits{MaxFailuresPerIP: 12, MaxFailuresPerUser: 10},
			setup: func(th *Throttle) {
				fail(th, "192.0.2.1", "alice", 10)
				th.Success(ip("192.0.2.1"), "alice")
				fail(th, "192.0.2.1", "bob", 2)
			},
			tries: []try{
				{"192.0.2.2", "alice", false},
				{"192.0.2.1", "carol", true}, // 12 failures from this IP
			},
		},
		{
			name:   "success from elsewhere does not clear the hammered network",
			limits: Limits{MaxFailuresPerIP: 1000},
			setup: func(th *Throttle) {
				fail(th, "203.0.113.1", "alice", 10)
				th.Success(ip("198.51.100.7"), "alice")
			},
			tries: []try{
				{"203.0.113.1", "alice", true},
				{"198.51.100.7", "alice", false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := New(Options{Limits: tt.limits, Now: newClock().Now})
			tt.setup(th)
			for _, tr := range tt.tries {
				d, blocked := th.Check(ip(tr.ip), tr.user)
				if blocked != tr.wantBlocked {
					t.Errorf("Check(%s, %q): got blocked=%v, want %v", tr.ip, tr.user, blocked, tr.wantBlocked)
				}
				if blocked && d != DefaultMaxDelay {
					t.Errorf("Check(%s, %q): blocked with delay %v, want %v", tr.ip, tr.user, d, DefaultMaxDelay)
				}
			}
		})
	}
}

func TestInvalidAddress(t *testing.T) {
	th := New(Options{Limits: Limits{MaxFailuresPerIP: 1, MaxFailuresPerUser: 2}})
	th.Failure(netip.Addr{}, "alice")
	if c, u := th.Len(); c != 0 || u != 1 {
		t.Fatalf("Len: got %d clients %d users, want 0 and 1", c, u)
	}
	if _, blocked := th.Check(netip.Addr{}, "alice"); blocked {
		t.Fatalf("one failure: got blocked, want not blocked")
	}
	th.Failure(netip.Addr{}, "alice")
	if _, blocked := th.Check(netip.Addr{}, "alice"); !blocked {
		t.Fatalf("two failures: got not blocked, want blocked")
	}
}

func TestWindowExpiry(t *testing.T) {
	clk := newClock()
	th := New(Options{Limits: Limits{Window: 10 * time.Minute, MaxFailuresPerUser: 3, MaxFailuresPerIP: 5}, Now: clk.Now})
	fail(th, "192.0.2.1", "alice", 3)
	steps := []struct {
		advance     time.Duration
		wantBlocked bool
		wantDelay   time.Duration
	}{
		{0, true, DefaultMaxDelay},
		{9*time.Minute + 59*time.Second, true, DefaultMaxDelay},
		{time.Second, false, 0}, // exactly Window after the first failure
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		d, blocked := th.Check(ip("192.0.2.1"), "alice")
		if blocked != s.wantBlocked || d != s.wantDelay {
			t.Errorf("step %d: got blocked=%v delay=%v, want blocked=%v delay=%v", i, blocked, d, s.wantBlocked, s.wantDelay)
		}
	}
	// A failure after expiry opens a fresh window with a count of one.
	fail(th, "192.0.2.1", "alice", 1)
	if d, blocked := th.Check(ip("192.0.2.1"), "alice"); blocked || d != 0 {
		t.Errorf("after a new failure: got blocked=%v delay=%v, want false 0", blocked, d)
	}
}

func TestSetLimits(t *testing.T) {
	clk := newClock()
	th := New(Options{Now: clk.Now})
	fail(th, "192.0.2.1", "alice", 5)
	if _, blocked := th.Check(ip("192.0.2.1"), "alice"); blocked {
		t.Fatalf("5 failures under default limit 10: got blocked, want not")
	}
	th.SetLimits(Limits{MaxFailuresPerUser: 5})
	if _, blocked := th.Check(ip("192.0.2.1"), "alice"); !blocked {
		t.Fatalf("5 failures after SetLimits(5): got not blocked, want blocked")
	}
	if got := th.CurrentLimits(); got.MaxFailuresPerIP != 20 || got.Window != DefaultWindow {
		t.Errorf("zero fields after SetLimits: got %+v, want defaults", got)
	}
	clk.Advance(time.Minute)
	th.SetLimits(Limits{Window: time.Minute, MaxFailuresPerUser: 5})
	if _, blocked := th.Check(ip("192.0.2.1"), "alice"); blocked {
		t.Fatalf("after shrinking the window: got blocked, want not")
	}
}

func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a million addresses")
	}
	const cap = 1000
	th := New(Options{MaxEntries: cap, Now: newClock().Now})
	addrOf := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10 + byte(i>>24), byte(i >> 16), byte(i >> 8), byte(i)})
	}
	users := make([]string, 5000)
	for i := range users {
		users[i] = fmt.Sprint("u", i)
	}
	for i := range 1_000_000 {
		th.Failure(addrOf(i), users[i%len(users)])
		if i%100_000 == 0 {
			if c, u := th.Len(); c > cap || u > cap {
				t.Fatalf("after %d failures: tables hold %d and %d entries, want ≤ %d", i+1, c, u, cap)
			}
		}
	}
	c, u := th.Len()
	if c != cap || u != cap {
		t.Fatalf("after flood: tables hold %d clients, %d users; want exactly %d each", c, u, cap)
	}
	// The most recent entries survive: the last address has its failure.
	th.SetLimits(Limits{MaxFailuresPerIP: 1})
	if _, blocked := th.Check(addrOf(999_999), "x"); !blocked {
		t.Errorf("last flooded address: got not blocked, want blocked (entry evicted too early)")
	}
}

func TestDefaultCapacityFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods 200,000 networks")
	}
	th := New(Options{Now: newClock().Now})
	for i := range 200_000 {
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 1})
		th.Failure(addr, "alice")
	}
	if c, u := th.Len(); c > DefaultMaxEntries || u > DefaultMaxEntries {
		t.Fatalf("got %d clients, %d users, want ≤ %d each", c, u, DefaultMaxEntries)
	}
}

func TestConcurrent(t *testing.T) {
	th := New(Options{MaxEntries: 64, Limits: Limits{MaxFailuresPerIP: -1, MaxFailuresPerUser: 1 << 30}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				addr := netip.AddrFrom4([4]byte{192, 0, byte(g), byte(i)})
				user := fmt.Sprint("u", i%100)
				th.Check(addr, user)
				th.Failure(addr, user)
				if i%7 == 0 {
					th.Success(addr, user)
				}
				if i%500 == 0 {
					th.SetLimits(Limits{MaxFailuresPerIP: -1, MaxFailuresPerUser: 1 << 30})
				}
			}
		})
	}
	wg.Wait()
	if c, u := th.Len(); c > 64 || u > 64 {
		t.Fatalf("got %d clients, %d users, want ≤ 64 each", c, u)
	}
}

func BenchmarkCheckFailure(b *testing.B) {
	th := New(Options{BaseDelay: -1, Limits: Limits{MaxFailuresPerIP: -1, MaxFailuresPerUser: -1}})
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprint("user", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		addr := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		th.Check(addr, users[i%len(users)])
		th.Failure(addr, users[i%len(users)])
		i++
	}
}
