package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// recorder collects the hook calls of a registry.
type recorder struct {
	mu       sync.Mutex
	refuse   map[string]bool // users the recheck refuses
	upstream []string
	closed   []string
}

func (rec *recorder) hooks() Hooks {
	return Hooks{
		Recheck: func(_ context.Context, live []Info) []Verdict {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			var out []Verdict
			for _, s := range live {
				if rec.refuse[s.User] {
					out = append(out, Verdict{ID: s.ID, Rule: "user_blocked", Reason: "blocked"})
				}
			}
			return out
		},
		Upstream: func(s Info, ok bool) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.upstream = append(rec.upstream, fmt.Sprintf("%s:%v", s.User, ok))
		},
		Closed: func(s Info, why Why) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.closed = append(rec.closed, fmt.Sprintf("%s:%s:%s", s.User, why.Cause, why.Rule))
		},
	}
}

func (rec *recorder) get() (up, closed string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return fmt.Sprint(rec.upstream), fmt.Sprint(rec.closed)
}

// TestConfirmAndUpstreamOutcome: a session is pending until Confirm, which
// re-decides it; the upstream outcome reaches the hook once, and a pending
// session that ends without Confirm counts as an upstream failure unless
// the registry closed it.
func TestConfirmAndUpstreamOutcome(t *testing.T) {
	r := New()
	rec := &recorder{refuse: map[string]bool{"bob": true}}
	r.SetHooks(rec.hooks())
	ctx := context.Background()

	var aliceClosed atomic.Bool
	a, doneA := r.Register(Info{User: "alice", AppPasswordID: "ap1"}, func() { aliceClosed.Store(true) })
	if got := r.List("alice"); len(got) != 1 || !got[0].Pending {
		t.Fatalf("before Confirm: %+v, want one pending session", got)
	}
	if !r.Confirm(ctx, a) {
		t.Fatal("Confirm(alice): false, want true")
	}
	if got := r.List("alice"); got[0].Pending {
		t.Error("after Confirm: still pending")
	}
	var bobClosed atomic.Bool
	b, doneB := r.Register(Info{User: "bob"}, func() { bobClosed.Store(true) })
	if r.Confirm(ctx, b) || !bobClosed.Load() {
		t.Errorf("Confirm(bob): want false and the session closed (the recheck refuses bob)")
	}
	doneB()
	_, doneC := r.Register(Info{User: "carol"}, func() {})
	doneC() // upstream refused: never confirmed
	doneA()
	up, closed := rec.get()
	if up != "[alice:true carol:false]" {
		t.Errorf("upstream outcomes: got %s, want [alice:true carol:false]", up)
	}
	if closed != "[bob:recheck:user_blocked]" {
		t.Errorf("closed: got %s, want [bob:recheck:user_blocked]", closed)
	}
	if aliceClosed.Load() {
		t.Error("alice closed")
	}
}

// TestRevokeDuringDial: a kill while the upstream login runs closes the
// pending session, and Confirm afterwards refuses it.
func TestRevokeDuringDial(t *testing.T) {
	r := New()
	rec := &recorder{}
	r.SetHooks(rec.hooks())
	var closed atomic.Bool
	id, done := r.Register(Info{User: "alice", AppPasswordID: "ap1"}, func() { closed.Store(true) })
	if n := r.KillAppPasswords("ap1"); n != 1 || !closed.Load() {
		t.Fatalf("revoke during dial: closed %d (closeFn called %v), want 1", n, closed.Load())
	}
	if r.Confirm(context.Background(), id) {
		t.Error("Confirm after revoke: true, want false")
	}
	done()
	up, cl := rec.get()
	if up != "[]" || cl != "[alice:revoke:]" {
		t.Errorf("hooks: upstream %s closed %s, want [] and [alice:revoke:]", up, cl)
	}
}

// TestSweep: Sweep closes exactly the sessions the recheck refuses.
func TestSweep(t *testing.T) {
	r := New()
	rec := &recorder{refuse: map[string]bool{}}
	r.SetHooks(rec.hooks())
	var closed sync.Map
	for _, u := range []string{"alice", "bob", "bob", "carol"} {
		var id string
		id, _ = r.Register(Info{User: u}, func() { closed.Store(id, u) })
		r.Confirm(context.Background(), id)
	}
	if n := r.Sweep(context.Background()); n != 0 {
		t.Fatalf("sweep with nothing refused closed %d", n)
	}
	rec.mu.Lock()
	rec.refuse["bob"] = true
	rec.mu.Unlock()
	if n := r.Sweep(context.Background()); n != 2 {
		t.Errorf("sweep: closed %d, want bob's 2", n)
	}
	closed.Range(func(_, v any) bool {
		if v != "bob" {
			t.Errorf("sweep closed %v's session", v)
		}
		return true
	})
	if n := r.Sweep(context.Background()); n != 0 {
		t.Errorf("second sweep closed %d again, want 0 (already closed)", n)
	}
}
