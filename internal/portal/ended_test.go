package portal

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestEndedSessionsBoundedAndPersistent: the table survives a reload from
// its file, forgets sessions that expired anyway, and when full ends every
// session started so far instead of growing.
func TestEndedSessionsBoundedAndPersistent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portal.key.ended")
	now := time.Now()
	e, err := loadEndedSessions(path, now)
	if err != nil {
		t.Fatal(err)
	}
	start := now.Add(-time.Hour)
	if err := e.end("A", start, now); err != nil {
		t.Fatal(err)
	}
	if err := e.end("old", now.Add(-MaxSessionAge-time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: got %v %v, want mode 0600", fi, err)
	}
	e2, err := loadEndedSessions(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if !e2.has("A", start) || e2.has("B", start) {
		t.Errorf("after reload: A ended %v (want true), B ended %v (want false)", e2.has("A", start), e2.has("B", start))
	}
	if _, ok := e2.ids["old"]; ok {
		t.Error("a session past MaxSessionAge was kept")
	}
	e2.max = 50
	for i := range e2.max + 1 {
		if err := e2.end("s"+strconv.Itoa(i), start, now); err != nil {
			t.Fatal(err)
		}
	}
	if len(e2.ids) > e2.max {
		t.Errorf("table size: got %d, want at most %d", len(e2.ids), e2.max)
	}
	if !e2.has("never-ended", start) {
		t.Error("after an overflow, a session started before it: got valid, want ended")
	}
	if e2.has("new", now.Add(2*time.Second)) {
		t.Error("a session started after the overflow: got ended, want valid")
	}
	e3, err := loadEndedSessions(path, now)
	if err != nil || !e3.has("never-ended", start) {
		t.Errorf("overflow mark after reload: err %v, ended %v, want true", err, e3.has("never-ended", start))
	}
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, err := loadEndedSessions(path, now); err == nil {
		t.Error("malformed file: got no error")
	}
}

// BenchmarkEndNearlyFull is the cost of one sign-out with the table close
// to full (a rewrite of ~10k lines and an fsync).
func BenchmarkEndNearlyFull(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ended")
	now := time.Now()
	e, err := loadEndedSessions(path, now)
	if err != nil {
		b.Fatal(err)
	}
	for i := range maxEnded - 2 {
		e.ids["x"+strconv.Itoa(i)+"ABCDEFGHIJKLMNOPQRSTUVWXYZ"] = now.Add(time.Hour)
	}
	b.ResetTimer()
	for i := range b.N {
		id := "b" + strconv.Itoa(i)
		if err := e.end(id, now, now); err != nil {
			b.Fatal(err)
		}
		delete(e.ids, id)
	}
}
