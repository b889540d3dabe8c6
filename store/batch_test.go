package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// fakeWriter is a BatchWriter in memory that can be made to fail.
type fakeWriter struct {
	mu      sync.Mutex
	fail    bool
	recs    []AuditRecord
	head    AuditHead
	uses    map[string]LastUse
	pruneAt []time.Time
}

func (w *fakeWriter) WriteBatch(_ context.Context, b Batch) (bool, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return false, 0, errors.New("no space left on device")
	}
	_, next, err := Chain(b.Audit, w.head)
	if err != nil {
		return false, 0, err
	}
	w.head = next
	w.recs = append(w.recs, b.Audit...)
	if w.uses == nil {
		w.uses = make(map[string]LastUse)
	}
	for id, u := range b.Uses {
		w.uses[id] = u
	}
	return true, len(b.Audit), nil
}

func (w *fakeWriter) PruneAudit(_ context.Context, before time.Time) (int, AuditHead, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pruneAt = append(w.pruneAt, before)
	return 0, AuditHead{}, nil
}

func (w *fakeWriter) setFail(f bool) {
	w.mu.Lock()
	w.fail = f
	w.mu.Unlock()
}

func (w *fakeWriter) records() []AuditRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]AuditRecord(nil), w.recs...)
}

// countingHandler counts log records by message.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = make(map[string]int)
	}
	h.n[r.Message]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

// With every flush failing (a full disk), 20,000 records with 8 KiB names
// keep the queue within its byte bound; what does not fit is counted and
// logged (a bounded number of lines per flush), and once the disk works
// again the gap is written to the chain.
func TestBatcherBoundedWhenFlushFails(t *testing.T) {
	ctx := context.Background()
	w := &fakeWriter{fail: true}
	logs := &countingHandler{}
	const maxBytes = 256 << 10
	b := NewBatcher(w, BatcherOptions{Interval: time.Hour, AuditBounds: AuditBounds{MaxPendingBytes: maxBytes}, Logger: slog.New(logs)})
	defer b.Close(ctx)
	long := strings.Repeat("x", 8<<10)
	const n = 20_000
	for i := range n {
		b.Audit(AuditRecord{Action: "login", User: fmt.Sprintf("%s%d", long, i), IP: "192.0.2.1", Outcome: "deny", Rule: "bad_credentials"})
		if i%1000 == 0 {
			if err := b.Flush(ctx); err == nil {
				t.Fatal("Flush: got nil, want the writer's error")
			}
		}
	}
	_, recs, size := b.Pending()
	if size > maxBytes {
		t.Errorf("queued bytes: got %d, want at most %d", size, maxBytes)
	}
	st := b.Stats()
	if st.Dropped == 0 || uint64(recs)+st.Dropped != n {
		t.Errorf("queued %d + dropped %d: want %d in all, some dropped", recs, st.Dropped, n)
	}
	// The explicit flushes, plus at most one kicked flush: after a failure
	// kicks wait for the next interval (an hour here).
	if st.FlushFailures < n/1000 || st.FlushFailures > n/1000+1 {
		t.Errorf("flush failures: got %d, want %d or %d", st.FlushFailures, n/1000, n/1000+1)
	}
	if got := logs.count("store: audit record dropped"); got == 0 || got > maxDroppedLines*int(st.FlushFailures+1) {
		t.Errorf("dropped-record log lines: got %d, want some and at most %d", got, maxDroppedLines*int(st.FlushFailures+1))
	}
	w.setFail(false)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := w.records()
	if len(got) != recs+1 {
		t.Fatalf("written: got %d records, want the %d queued + 1", len(got), recs)
	}
	last := got[len(got)-1]
	if last.Action != "audit-dropped" || !strings.HasPrefix(last.Detail, fmt.Sprint(st.Dropped)+" audit records dropped") {
		t.Errorf("last record: got %s %q, want audit-dropped naming %d", last.Action, last.Detail, st.Dropped)
	}
	for _, r := range got {
		if len(r.User) > MaxAuditField {
			t.Fatalf("user of %d bytes written, want at most %d", len(r.User), MaxAuditField)
		}
	}
	if logs.count("store: audit head") == 0 {
		t.Error("no \"store: audit head\" log line after a flush that wrote records")
	}
}

// Throttled attempts fold into one record per source, name and protocol.
func TestBatcherAggregatesThrottled(t *testing.T) {
	ctx := context.Background()
	w := &fakeWriter{}
	b := NewBatcher(w, BatcherOptions{Interval: time.Hour})
	defer b.Close(ctx)
	for range 500 {
		b.Audit(AuditRecord{Action: "login", User: "Alice", IP: "192.0.2.1", Protocol: "imap", Outcome: "deny", Rule: "throttled"})
		b.Audit(AuditRecord{Action: "login", User: "bob", IP: "192.0.2.1", Protocol: "imap", Outcome: "deny", Rule: "throttled"})
	}
	b.Audit(AuditRecord{Action: "login", User: "alice", IP: "192.0.2.9", Protocol: "imap", Outcome: "deny", Rule: "throttled"})
	b.Audit(AuditRecord{Action: "login", User: "alice", IP: "192.0.2.1", Protocol: "imap", Outcome: "deny", Rule: "bad_credentials"})
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	counts := make(map[string]uint64)
	for _, r := range w.records() {
		counts[r.User+"/"+r.IP+"/"+r.Rule] += max(r.Count, 1)
		if r.Rule == "throttled" && r.User == "alice" && r.IP == "192.0.2.1" && r.Count != 500 {
			t.Errorf("alice's throttled record: got count %d, want 500", r.Count)
		}
	}
	want := map[string]uint64{"alice/192.0.2.1/throttled": 500, "bob/192.0.2.1/throttled": 500,
		"alice/192.0.2.9/throttled": 1, "alice/192.0.2.1/bad_credentials": 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("records: got %v, want %v", counts, want)
	}
	if got := len(w.records()); got != 4 {
		t.Errorf("records written: got %d, want 4", got)
	}
}

// A timed flush leaves a throttle window open until it has lasted
// ThrottleWindow; an explicit Flush closes it.
func TestBatcherThrottleWindow(t *testing.T) {
	ctx := context.Background()
	w := &fakeWriter{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := NewBatcher(w, BatcherOptions{Interval: time.Hour, AuditBounds: AuditBounds{ThrottleWindow: time.Minute}, Now: clock})
	defer b.Close(ctx)
	b.Audit(AuditRecord{Action: "login", User: "alice", IP: "192.0.2.1", Outcome: "deny", Rule: "throttled"})
	if err := b.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := len(w.records()); got != 0 {
		t.Fatalf("window open: got %d records written, want 0", got)
	}
	b.Audit(AuditRecord{Action: "login", User: "alice", IP: "192.0.2.1", Outcome: "deny", Rule: "throttled"})
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if err := b.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := w.records(); len(got) != 1 || got[0].Count != 2 {
		t.Fatalf("window over: got %+v, want one record with count 2", got)
	}
}

func TestBoundRecord(t *testing.T) {
	long := strings.Repeat("é", 4096) // 8 KiB, two bytes a rune
	other := strings.Repeat("é", 4095) + "e"
	r1 := AuditRecord{User: long, Client: long, Detail: strings.Repeat("d", 5000), IP: "192.0.2.1"}
	r2 := AuditRecord{User: other}
	BoundRecord(&r1)
	BoundRecord(&r2)
	for name, v := range map[string]string{"user": r1.User, "client": r1.Client, "other": r2.User} {
		if len(v) > MaxAuditField || !utf8.ValidString(v) || !strings.Contains(v, " bytes sha256:") {
			t.Errorf("%s: got %d bytes %q, want at most %d valid UTF-8 with the marker", name, len(v), v, MaxAuditField)
		}
	}
	if len(r1.Detail) > MaxAuditDetail || !strings.Contains(r1.Detail, "…[5000 bytes") {
		t.Errorf("detail: got %d bytes, want at most %d with the marker", len(r1.Detail), MaxAuditDetail)
	}
	if r1.User == r2.User {
		t.Error("two different long names were cut to the same value")
	}
	if r1.IP != "192.0.2.1" {
		t.Errorf("short field changed: %q", r1.IP)
	}
}

// With Retain set the flusher prunes at once and then every PruneEvery.
func TestBatcherPrunes(t *testing.T) {
	ctx := context.Background()
	w := &fakeWriter{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBatcher(w, BatcherOptions{Interval: 5 * time.Millisecond, AuditBounds: AuditBounds{Retain: 400 * 24 * time.Hour}, Now: func() time.Time { return now }})
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := len(w.pruneAt)
		w.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no prune within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // more ticks, same clock: no second prune
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.pruneAt) != 1 || !w.pruneAt[0].Equal(now.Add(-400*24*time.Hour)) {
		t.Errorf("prunes: got %v, want one before %v", w.pruneAt, now.Add(-400*24*time.Hour))
	}
}

// ChainCheck starts from the anchor after pruning.
func TestChainCheckAnchor(t *testing.T) {
	recs := make([]AuditRecord, 5)
	for i := range recs {
		recs[i] = AuditRecord{Time: time.Unix(int64(i), 0), Action: "login", User: "alice", Outcome: "allow"}
	}
	vals, head, err := Chain(recs, AuditHead{})
	if err != nil {
		t.Fatal(err)
	}
	anchor := AuditHead{Seq: 2, Hash: recs[1].Hash}
	chk := NewChainCheck(anchor)
	for i := 2; i < 5; i++ {
		if !chk.Next(uint64(i+1), vals[i]) {
			t.Fatalf("record %d: broken", i+1)
		}
	}
	if res := chk.End(head); !res.OK || res.Pruned != 2 || res.Records != 3 || res.Head.Seq != 5 || !bytes.Equal(res.Head.Hash, head.Hash) {
		t.Errorf("after pruning: got %+v, want OK, pruned 2, 3 records, head 5", res)
	}
	chk = NewChainCheck(AuditHead{Seq: 2, Hash: recs[0].Hash}) // wrong anchor
	if chk.Next(3, vals[2]) {
		t.Error("record 3 accepted after a wrong anchor")
	}
}
