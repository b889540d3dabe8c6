package store

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Last uses and audit records are written in batches: RecordUse and Audit
// only append to memory, and the Batcher's flusher hands everything pending
// to the backend (BatchWriter) every Interval, in one write (bbolt: one
// transaction, one fsync; etcd: a few txns). A crash loses at most one
// interval of last uses and audit records, never an acknowledged Create or
// Revoke. Both backends use this one Batcher.
//
// What is queued is bounded, whatever the clients send:
//   - every string field of a record is cut to MaxAuditField bytes
//     (MaxAuditDetail for Detail) with a marker (see BoundRecord);
//   - throttled login attempts are aggregated: one record per source
//     address, login name and protocol per ThrottleWindow, with a Count;
//   - the queue is bounded in records (MaxPending) and in bytes
//     (MaxPendingBytes). When it is full — typically because flushes fail
//     (disk full, etcd down) — the oldest record is dropped: it goes to the
//     log instead (a bounded number of lines per interval), it is counted
//     (AuditStats), and the next successful flush writes an "audit-dropped"
//     record so the gap is visible in the chain. Memory never grows past
//     the bounds and nothing panics.

// Batch is what one flush hands to the backend.
type Batch struct {
	// Uses are the latest last use per app-password id.
	Uses map[string]LastUse
	// Audit are the records to append, oldest first; the writer assigns
	// Seq, Prev and Hash in place (see Chain).
	Audit []AuditRecord
}

// BatchWriter is what a backend gives the Batcher. Its methods are called
// by one flush at a time and must not wait for the store's Lifecycle.
type BatchWriter interface {
	// WriteBatch stores b: the last uses (skipping ids no longer stored
	// and uses older than the stored one) and the audit records, chained
	// after the stored head. usesDone reports whether the uses were
	// written, recsDone how many records (a prefix of b.Audit) were.
	WriteBatch(ctx context.Context, b Batch) (usesDone bool, recsDone int, err error)
	// PruneAudit removes the oldest records stamped before before (a
	// prefix of the chain) and records the last removed one as the anchor.
	// It returns how many it removed and the anchor.
	PruneAudit(ctx context.Context, before time.Time) (int, AuditHead, error)
}

// Defaults of BatcherOptions.
const (
	DefaultFlushInterval   = 2 * time.Second
	DefaultMaxPending      = 100_000
	DefaultMaxPendingBytes = 16 << 20
	DefaultThrottleWindow  = time.Minute
	// PruneEvery is how often the flusher prunes when Retain is set.
	PruneEvery = time.Hour
	// maxDroppedLines bounds the dropped records logged per interval.
	maxDroppedLines = 100
)

// AuditBounds bound the audit a Batcher keeps; both backends' Options
// embed them and hand them on. The zero value of every field works.
type AuditBounds struct {
	// MaxPending bounds the queued audit records and the last-use map;
	// zero means 100,000.
	MaxPending int
	// MaxPendingBytes bounds the queued audit records by their size; zero
	// means 16 MiB.
	MaxPendingBytes int
	// ThrottleWindow is the window over which throttled login attempts are
	// aggregated into one record per source, name and protocol; zero
	// means one minute.
	ThrottleWindow time.Duration
	// Retain is how long audit records are kept (audit.retain); zero
	// means forever. Pruning runs every PruneEvery (and once soon after
	// start).
	Retain time.Duration
}

// BatcherOptions configures a Batcher. The zero value of every field works.
type BatcherOptions struct {
	// Interval is how often pending last uses and audit records are
	// written; zero means 2s.
	Interval time.Duration
	AuditBounds
	// Logger receives flush errors, dropped records and each new head;
	// nil means discard.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// BatchStats counts what the audit queue could not keep, since open.
type BatchStats struct {
	Dropped       uint64 // audit records dropped (logged instead)
	FlushFailures uint64 // flushes that failed
	Pruned        uint64 // audit records removed by retention
}

type aggKey struct{ ip, user, proto string }

// Batcher queues last uses and audit records for a BatchWriter and flushes
// them from its own goroutine, which Close stops.
type Batcher struct {
	w        BatchWriter
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	maxPend  int
	maxBytes int
	window   time.Duration
	retain   time.Duration

	mu          sync.Mutex
	uses        map[string]LastUse
	recs        []AuditRecord
	bytes       int // size of recs and agg
	agg         map[aggKey]*AuditRecord
	dropped     uint64        // not yet reported in the chain
	droppedLog  []AuditRecord // dropped records to log at the next flush (bounded)
	droppedMore uint64        // dropped beyond droppedLog
	closed      bool

	flushMu   sync.Mutex // one flush at a time: chain order
	lastPrune time.Time

	droppedTotal  atomic.Uint64
	flushFailures atomic.Uint64
	prunedTotal   atomic.Uint64

	kick   chan struct{}
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	done   chan struct{}
}

// NewBatcher starts a Batcher writing to w.
func NewBatcher(w BatchWriter, opts BatcherOptions) *Batcher {
	b := &Batcher{
		w: w, log: opts.Logger, now: opts.Now, interval: opts.Interval,
		maxPend: opts.MaxPending, maxBytes: opts.MaxPendingBytes,
		window: opts.ThrottleWindow, retain: opts.Retain,
		uses: make(map[string]LastUse), agg: make(map[aggKey]*AuditRecord),
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.interval = cmp.Or(max(b.interval, 0), DefaultFlushInterval)
	b.maxPend = cmp.Or(max(b.maxPend, 0), DefaultMaxPending)
	b.maxBytes = cmp.Or(max(b.maxBytes, 0), DefaultMaxPendingBytes)
	b.window = cmp.Or(max(b.window, 0), DefaultThrottleWindow)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.flusher()
	return b
}

// RecordUse notes a successful login with app password id. It never touches
// the disk: the latest use per id is kept in memory until the next flush. A
// use of an id that is revoked before the flush is dropped.
func (b *Batcher) RecordUse(id string, use LastUse) {
	if use.Time.IsZero() {
		use.Time = b.now()
	}
	use.Time = use.Time.UTC()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	old, ok := b.uses[id]
	if ok && old.Time.After(use.Time) {
		return
	}
	if !ok && len(b.uses) >= b.maxPend {
		b.kickLocked()
		return // bounded: drop; the next use after the flush will be kept
	}
	b.uses[id] = use
}

// recSize estimates what a queued record costs in memory.
func recSize(r *AuditRecord) int {
	return 200 + len(r.Action) + len(r.Via) + len(r.User) + len(r.Protocol) + len(r.IP) +
		len(r.Outcome) + len(r.Rule) + len(r.AppPasswordID) + len(r.Client) + len(r.Detail)
}

// Audit queues rec for the audit log; Seq, Prev and Hash are assigned when
// it is written. Its fields are bounded first (BoundRecord); a throttled
// login attempt is folded into the open record for its source, name and
// protocol. It never touches the disk.
func (b *Batcher) Audit(rec AuditRecord) {
	if rec.Time.IsZero() {
		rec.Time = b.now()
	}
	rec.Seq, rec.Prev, rec.Hash = 0, nil, nil
	rec.User = NormalizeUser(rec.User)
	BoundRecord(&rec)
	size := recSize(&rec)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if rec.Action == "login" && rec.Rule == "throttled" {
		k := aggKey{rec.IP, rec.User, rec.Protocol}
		if a, ok := b.agg[k]; ok {
			a.Count++
			return
		}
		if b.bytes+size > b.maxBytes || len(b.recs)+len(b.agg) >= b.maxPend {
			b.dropLocked(rec)
			b.kickLocked()
			return
		}
		rec.Count = 1
		b.agg[k] = &rec
		b.bytes += size
		return
	}
	b.recs = append(b.recs, rec)
	b.bytes += size
	b.trimLocked()
	if len(b.recs) >= b.maxPend/2 || b.bytes >= b.maxBytes/2 {
		b.kickLocked()
	}
}

// trimLocked drops the oldest queued records until the bounds hold.
func (b *Batcher) trimLocked() {
	n := 0
	for n < len(b.recs) && (len(b.recs)-n+len(b.agg) > b.maxPend || b.bytes > b.maxBytes) {
		b.bytes -= recSize(&b.recs[n])
		b.dropLocked(b.recs[n])
		b.recs[n] = AuditRecord{} // release references
		n++
	}
	if n > 0 {
		b.recs = b.recs[n:]
	}
}

// dropLocked counts rec as dropped and keeps it for the log, within bounds.
func (b *Batcher) dropLocked(rec AuditRecord) {
	b.dropped++
	b.droppedTotal.Add(1)
	if len(b.droppedLog) < maxDroppedLines {
		b.droppedLog = append(b.droppedLog, rec)
	} else {
		b.droppedMore++
	}
}

func (b *Batcher) kickLocked() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// MergeUse returns the newer of a stored last use and the pending one of id.
func (b *Batcher) MergeUse(id string, stored LastUse) LastUse {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.uses[id]; ok && p.Time.After(stored.Time) {
		return p
	}
	return stored
}

// Forget drops the pending last uses of revoked ids.
func (b *Batcher) Forget(ids ...string) {
	b.mu.Lock()
	for _, id := range ids {
		delete(b.uses, id)
	}
	b.mu.Unlock()
}

// Pending reports what is queued: last uses, audit records (open throttle
// windows included) and their estimated bytes.
func (b *Batcher) Pending() (uses, records, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.uses), len(b.recs) + len(b.agg), b.bytes
}

// Stats returns the counters since NewBatcher.
func (b *Batcher) Stats() BatchStats {
	return BatchStats{Dropped: b.droppedTotal.Load(), FlushFailures: b.flushFailures.Load(), Pruned: b.prunedTotal.Load()}
}

// flusher is the goroutine NewBatcher starts and Close stops.
func (b *Batcher) flusher() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		case <-b.kick:
			if failed {
				continue // after a failure, retry on the interval, not on every record
			}
		}
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		err := b.flush(ctx, false)
		failed = err != nil
		if err != nil && b.ctx.Err() == nil {
			b.log.Error("store: flush failed; will retry", "err", err, "flush_failures", b.flushFailures.Load(), "audit_dropped", b.droppedTotal.Load())
		}
		if b.pruneDue() {
			if err := b.Prune(ctx); err != nil && b.ctx.Err() == nil {
				b.log.Error("store: pruning the audit log failed; will retry", "err", err)
			}
		}
		cancel()
	}
}

// pruneDue reports whether the flusher should prune now.
func (b *Batcher) pruneDue() bool {
	if b.retain <= 0 || b.ctx.Err() != nil {
		return false
	}
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	return b.now().Sub(b.lastPrune) >= PruneEvery
}

// Flush writes everything pending now, open throttle windows included.
func (b *Batcher) Flush(ctx context.Context) error { return b.flush(ctx, true) }

// Close stops the flusher and flushes what is pending. Later RecordUse and
// Audit calls are ignored.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if already {
		return nil
	}
	b.cancel()
	<-b.done
	return b.flush(ctx, true)
}

// Prune removes the records older than Retain now (nothing when Retain is
// zero) and appends an "audit-pruned" record naming the new anchor.
func (b *Batcher) Prune(ctx context.Context) error {
	if b.retain <= 0 {
		return nil
	}
	b.flushMu.Lock()
	now := b.now()
	before := now.Add(-b.retain)
	n, anchor, err := b.w.PruneAudit(ctx, before)
	if err == nil {
		b.lastPrune = now
	}
	b.flushMu.Unlock()
	if err != nil {
		return fmt.Errorf("store: prune audit: %w", err)
	}
	if n == 0 {
		return nil
	}
	b.prunedTotal.Add(uint64(n))
	b.log.Info("store: audit records pruned", "records", n, "before", before.UTC().Format(time.RFC3339), "anchor", anchor.String())
	b.Audit(AuditRecord{Time: now, Action: "audit-pruned", Outcome: "ok",
		Detail: fmt.Sprintf("%d records older than %s removed (audit.retain); the chain now starts after record %s", n, before.UTC().Format(time.RFC3339), anchor)})
	return nil
}

// flush takes what is pending and hands it to the writer; what was not
// written is put back (within the bounds). With force, open throttle
// windows are taken too; otherwise only those older than the window.
func (b *Batcher) flush(ctx context.Context, force bool) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()

	now := b.now()
	b.mu.Lock()
	uses, recs, dropped := b.uses, b.recs, b.dropped
	var aggs []AuditRecord
	for k, a := range b.agg {
		if force || now.Sub(a.Time) >= b.window {
			aggs = append(aggs, *a)
			b.bytes -= recSize(a)
			delete(b.agg, k)
		}
	}
	dlog, dmore := b.droppedLog, b.droppedMore
	b.droppedLog, b.droppedMore = nil, 0
	if len(uses) == 0 && len(recs) == 0 && len(aggs) == 0 && dropped == 0 {
		b.mu.Unlock()
		b.logDropped(dlog, dmore)
		return nil
	}
	b.uses = make(map[string]LastUse)
	b.recs = nil
	for i := range recs {
		b.bytes -= recSize(&recs[i])
	}
	b.dropped = 0
	b.mu.Unlock()
	b.logDropped(dlog, dmore)

	slices.SortFunc(aggs, func(x, y AuditRecord) int { return x.Time.Compare(y.Time) })
	for i := range aggs {
		if aggs[i].Count == 1 {
			aggs[i].Count = 0
		}
	}
	recs = append(recs, aggs...)
	if dropped > 0 {
		b.log.Warn("store: audit queue full, records dropped", "dropped", dropped)
		recs = append(recs, AuditRecord{
			Time: now, Action: "audit-dropped", Outcome: "error",
			Detail: fmt.Sprintf("%d audit records dropped: the queue (%d records, %d bytes) was full; they were logged instead", dropped, b.maxPend, b.maxBytes),
		})
	}
	usesDone, n, err := b.w.WriteBatch(ctx, Batch{Uses: uses, Audit: recs})
	if n > 0 {
		head := recs[n-1]
		b.log.Info("store: audit head", "seq", head.Seq, "hash", fmt.Sprintf("%x", head.Hash))
	}
	if err != nil {
		b.flushFailures.Add(1)
		if usesDone {
			uses = nil
		}
		if n == len(recs) {
			dropped = 0 // the audit-dropped record was written
		}
		b.requeue(uses, recs[n:], dropped)
		return fmt.Errorf("store: flush: %w", err)
	}
	return nil
}

// logDropped writes dropped records to the log: the degraded audit.
func (b *Batcher) logDropped(recs []AuditRecord, more uint64) {
	for _, r := range recs {
		b.log.Warn("store: audit record dropped", "time", r.Time.UTC().Format(time.RFC3339Nano),
			"action", r.Action, "via", r.Via, "user", r.User, "proto", r.Protocol, "ip", r.IP,
			"outcome", r.Outcome, "rule", r.Rule, "app_password", r.AppPasswordID, "count", max(r.Count, 1))
	}
	if more > 0 {
		b.log.Warn("store: more audit records dropped without a log line", "dropped", more)
	}
}

// requeue puts a failed batch back in front of what arrived meanwhile.
// With dropped > 0 the last record is the synthetic audit-dropped one: it is
// made again next time, and the count goes back.
func (b *Batcher) requeue(uses map[string]LastUse, recs []AuditRecord, dropped uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, u := range uses {
		if cur, ok := b.uses[id]; !ok || u.Time.After(cur.Time) {
			if ok || len(b.uses) < b.maxPend {
				b.uses[id] = u
			}
		}
	}
	if dropped > 0 && len(recs) > 0 {
		recs = recs[:len(recs)-1]
		b.dropped += dropped
	}
	for i := range recs {
		recs[i].Seq, recs[i].Prev, recs[i].Hash = 0, nil, nil
		b.bytes += recSize(&recs[i])
	}
	b.recs = append(recs, b.recs...)
	b.trimLocked()
}

// Queue is the queueing part of Store served by a Batcher: RecordUse, Audit,
// Flush (admitted by the backend's Lifecycle) and AuditStats. Backends
// embed it.
type Queue struct {
	b  *Batcher
	lc *Lifecycle
}

// NewQueue returns the Queue of a backend whose operations lc admits.
func NewQueue(b *Batcher, lc *Lifecycle) Queue { return Queue{b: b, lc: lc} }

// RecordUse notes a successful login; see Batcher.RecordUse.
func (q Queue) RecordUse(id string, use LastUse) { q.b.RecordUse(id, use) }

// Audit queues rec for the audit log; see Batcher.Audit.
func (q Queue) Audit(rec AuditRecord) { q.b.Audit(rec) }

// AuditStats counts the audit records the queue could not keep.
func (q Queue) AuditStats() BatchStats { return q.b.Stats() }

// Flush writes pending last uses and audit records now.
func (q Queue) Flush(ctx context.Context) error {
	if err := q.lc.Begin(ctx); err != nil {
		return err
	}
	defer q.lc.End()
	return q.b.Flush(ctx)
}
