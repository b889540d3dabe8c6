package session

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRegistryKill(t *testing.T) {
	r := New()
	var closed sync.Map
	add := func(user, ap, proto string) string {
		var id string
		id, done := r.Register(Info{User: user, AppPasswordID: ap, Protocol: proto, IP: netip.MustParseAddr("192.0.2.1")},
			func() { closed.Store(id, true) })
		_ = done
		return id
	}
	a1 := add("Alice", "ap1", "imap")
	a2 := add("alice", "ap2", "smtp")
	b1 := add("bob", "ap3", "ldap")

	if got := len(r.List("ALICE")); got != 2 {
		t.Fatalf("List(ALICE): got %d sessions, want 2 (user names fold case)", got)
	}
	if got := r.Count("smtp"); got != 1 {
		t.Errorf("Count(smtp): got %d, want 1", got)
	}
	if got := r.KillAppPasswords("ap2", "nope"); got != 1 {
		t.Errorf("KillAppPasswords: got %d, want 1", got)
	}
	if _, ok := closed.Load(a2); !ok {
		t.Error("session of ap2 not closed")
	}
	if got := r.KillUser("alice"); got != 2 {
		t.Errorf("KillUser(alice): got %d, want 2 (a killed session stays listed until done)", got)
	}
	if _, ok := closed.Load(a1); !ok {
		t.Error("alice's imap session not closed")
	}
	if _, ok := closed.Load(b1); ok {
		t.Error("bob's session closed by alice's kill")
	}
	if got := r.KillID(b1); got != 1 {
		t.Errorf("KillID: got %d, want 1", got)
	}
}

func TestRegistryCloseOnceAndDone(t *testing.T) {
	r := New()
	var calls atomic.Int32
	id, done := r.Register(Info{User: "carol"}, func() { calls.Add(1) })
	r.KillID(id)
	r.KillUser("carol")
	if got := calls.Load(); got != 1 {
		t.Errorf("close called %d times, want 1", got)
	}
	done()
	if got := len(r.List("")); got != 0 {
		t.Errorf("after done: got %d sessions, want 0", got)
	}
	if got := r.KillID(id); got != 0 {
		t.Errorf("KillID after done: got %d, want 0", got)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, done := r.Register(Info{User: "u", AppPasswordID: "x"}, func() {})
			if i%2 == 0 {
				r.KillAppPasswords("x")
			}
			r.List("u")
			done()
		}()
	}
	wg.Wait()
	if got := r.Count(""); got != 0 {
		t.Errorf("after all done: got %d sessions, want 0", got)
	}
}
