package directory

import (
	"runtime"
	"slices"
	"sync"
	"time"
)

// equalizer makes a lookup that found nobody take as long as one that found
// a user, and the other way round (issue #13.9). Both run the same two
// searches, but a found entry is one more message on the wire and through
// the LDAP client (about 55 µs on loopback, 15 % of a lookup): enough to
// tell, over many tries, whether a name exists. Each answer is held until
// the median duration of recent answers of the other kind, measured before
// any holding, so the two cannot ratchet each other up.
type equalizer struct {
	mu    sync.Mutex
	found ring
	none  ring
	max   time.Duration // never hold an answer longer than this
}

// ring keeps the last len(d) durations of one kind.
type ring struct {
	d    [64]time.Duration
	n, i int
}

func (r *ring) add(d time.Duration) {
	r.d[r.i] = d
	r.i = (r.i + 1) % len(r.d)
	r.n = min(r.n+1, len(r.d))
}

// median of the kept durations; zero until there are enough of them.
func (r *ring) median() time.Duration {
	if r.n < 8 {
		return 0
	}
	var buf [len(r.d)]time.Duration
	s := buf[:r.n]
	copy(s, r.d[:r.n])
	slices.Sort(s)
	return s[len(s)/2]
}

// hold records how long an answer took since start (found says whether it
// found a user) and returns when an answer of the other kind would have.
func (q *equalizer) hold(start time.Time, found bool) {
	took := time.Since(start)
	q.mu.Lock()
	var target time.Duration
	if found {
		q.found.add(took)
		target = q.none.median()
	} else {
		q.none.add(took)
		target = q.found.median()
	}
	q.mu.Unlock()
	target = min(target, q.max)
	if took >= target {
		return
	}
	// Go timers wake about a millisecond late: sleep only the part of the
	// wait that is longer than that, and yield for the rest.
	if rest := target - took; rest > 2*time.Millisecond {
		time.Sleep(rest - 1500*time.Microsecond)
	}
	for time.Since(start) < target {
		runtime.Gosched()
	}
}
