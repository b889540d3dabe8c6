package store

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Last uses and audit records are written in batches: RecordUse and Audit only
// append to memory under pmu, and one read-write transaction (one fsync) every
// FlushInterval writes them all. A crash loses at most one interval of last
// uses and audit records, never an acknowledged Create or Revoke.

// RecordUse notes a successful login with app password id. It never touches
// the disk: the latest use per id is kept in memory until the next flush. A
// use of an id that is revoked before the flush is dropped.
func (b *Bolt) RecordUse(id string, use LastUse) {
	if b.closed.Load() {
		return
	}
	if use.Time.IsZero() {
		use.Time = b.now()
	}
	use.Time = use.Time.UTC()
	b.pmu.Lock()
	defer b.pmu.Unlock()
	old, ok := b.pendingUse[id]
	if ok && old.Time.After(use.Time) {
		return
	}
	if !ok && len(b.pendingUse) >= b.maxPend {
		b.kickLocked()
		return // bounded: drop; the next use after the flush will be kept
	}
	b.pendingUse[id] = use
}

// Audit queues rec for the audit log; Seq, Prev and Hash are assigned when it
// is flushed. It never touches the disk. When MaxPending records are already
// waiting, the oldest is dropped and counted; the next flush logs the count
// and writes an "audit-dropped" record so the gap is visible in the chain.
func (b *Bolt) Audit(rec AuditRecord) {
	if b.closed.Load() {
		return
	}
	if rec.Time.IsZero() {
		rec.Time = b.now()
	}
	rec.Seq, rec.Prev, rec.Hash = 0, nil, nil
	b.pmu.Lock()
	defer b.pmu.Unlock()
	if len(b.pendingAud) >= b.maxPend {
		b.pendingAud[0] = AuditRecord{} // release references
		b.pendingAud = b.pendingAud[1:]
		b.droppedAud++
	}
	b.pendingAud = append(b.pendingAud, rec)
	if len(b.pendingAud) >= b.maxPend/2 {
		b.kickLocked()
	}
}

// kickLocked asks the flusher to flush now without waiting for the interval.
func (b *Bolt) kickLocked() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// mergeUse returns the newer of the stored last use and a pending one.
func (b *Bolt) mergeUse(id string, stored LastUse) LastUse {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	if p, ok := b.pendingUse[id]; ok && p.Time.After(stored.Time) {
		return p
	}
	return stored
}

// flusher is the goroutine that OpenBolt starts and Close stops.
func (b *Bolt) flusher() {
	defer b.flusherDone.Done()
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.kick:
		}
		if err := b.flush(); err != nil {
			b.log.Error("store: flush failed; will retry", "err", err)
		}
	}
}

// Flush writes pending last uses and audit records now, in one transaction.
func (b *Bolt) Flush(ctx context.Context) error {
	release, err := b.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	return b.flush()
}

// flush takes everything pending and writes it in one Update. Nothing
// pending means no transaction at all. On failure the batch is put back so
// the next flush retries it.
func (b *Bolt) flush() error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()

	b.pmu.Lock()
	uses, recs, dropped := b.pendingUse, b.pendingAud, b.droppedAud
	if len(uses) == 0 && len(recs) == 0 && dropped == 0 {
		b.pmu.Unlock()
		return nil
	}
	b.pendingUse = make(map[string]LastUse)
	b.pendingAud = nil
	b.droppedAud = 0
	b.pmu.Unlock()

	if dropped > 0 {
		b.log.Warn("store: audit queue full, records dropped", "dropped", dropped)
		recs = append(recs, AuditRecord{
			Time:    b.now(),
			Action:  "audit-dropped",
			Outcome: "error",
			Detail:  fmt.Sprintf("%d audit records dropped: queue of %d full", dropped, b.maxPend),
		})
	}

	type written struct {
		hash []byte
		id   string
		use  LastUse
	}
	var done []written
	err := b.update(func(tx *bolt.Tx) error {
		done = done[:0] // an Update may not be retried, but be safe
		for id, use := range uses {
			p, ok, err := getPassword(tx, id)
			if err != nil {
				return err
			}
			if !ok || !use.Time.After(p.LastUse.Time) {
				continue // revoked meanwhile, or an older use
			}
			p.LastUse = use
			if err := putPassword(tx, p); err != nil {
				return err
			}
			done = append(done, written{p.Hash, p.ID, use})
		}
		return appendAudit(tx, recs)
	})
	if err != nil {
		b.requeue(uses, recs, dropped)
		return fmt.Errorf("store: flush: %w", err)
	}
	// Committed. Until this loop has run, a Verify of one of these may
	// report the previous last use (the pending one is already taken).
	for _, w := range done {
		b.rep.setLastUse(w.hash, w.id, w.use)
	}
	return nil
}

// requeue puts a failed batch back in front of what arrived meanwhile.
func (b *Bolt) requeue(uses map[string]LastUse, recs []AuditRecord, dropped uint64) {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	for id, u := range uses {
		if cur, ok := b.pendingUse[id]; !ok || u.Time.After(cur.Time) {
			b.pendingUse[id] = u
		}
	}
	if dropped > 0 {
		recs = recs[:len(recs)-1] // the synthetic record is made again next time
	}
	for i := range recs {
		recs[i].Seq, recs[i].Prev, recs[i].Hash = 0, nil, nil
	}
	all := append(recs, b.pendingAud...)
	if over := len(all) - b.maxPend; over > 0 {
		all = all[over:]
		dropped += uint64(over)
	}
	b.pendingAud = all
	b.droppedAud += dropped
}
