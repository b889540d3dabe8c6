package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Last uses and audit records are batched as in Bolt: RecordUse and Audit
// only append to memory, and every FlushInterval one flush writes them in a
// few txns (at most maxTxnOps operations each). No login costs an etcd
// write.

// RecordUse notes a successful login; see Bolt.RecordUse.
func (s *Etcd) RecordUse(id string, use LastUse) {
	if s.closed.Load() {
		return
	}
	if use.Time.IsZero() {
		use.Time = s.now()
	}
	use.Time = use.Time.UTC()
	s.pmu.Lock()
	defer s.pmu.Unlock()
	old, ok := s.pendingUse[id]
	if ok && old.Time.After(use.Time) {
		return
	}
	if !ok && len(s.pendingUse) >= s.maxPend {
		s.kickLocked()
		return
	}
	s.pendingUse[id] = use
}

// Audit queues rec for the audit log; see Bolt.Audit.
func (s *Etcd) Audit(rec AuditRecord) {
	if s.closed.Load() {
		return
	}
	if rec.Time.IsZero() {
		rec.Time = s.now()
	}
	rec.Seq, rec.Prev, rec.Hash = 0, nil, nil
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if len(s.pendingAud) >= s.maxPend {
		s.pendingAud[0] = AuditRecord{}
		s.pendingAud = s.pendingAud[1:]
		s.droppedAud++
	}
	s.pendingAud = append(s.pendingAud, rec)
	if len(s.pendingAud) >= s.maxPend/2 {
		s.kickLocked()
	}
}

func (s *Etcd) kickLocked() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Etcd) mergeUse(id string, stored LastUse) LastUse {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if p, ok := s.pendingUse[id]; ok && p.Time.After(stored.Time) {
		return p
	}
	return stored
}

func (s *Etcd) flusher(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := s.flush(fctx); err != nil && ctx.Err() == nil {
			s.log.Error("store: etcd: flush failed; will retry", "err", err)
		}
		cancel()
	}
}

// Flush writes pending last uses and audit records now.
func (s *Etcd) Flush(ctx context.Context) error {
	release, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	return s.flush(ctx)
}

// flush writes everything pending. Last uses go in txns of nested txns, each
// conditional on the record still being the same incarnation (CreateRevision),
// so a use never resurrects a revoked password. What fails is requeued.
func (s *Etcd) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.pmu.Lock()
	uses, recs, dropped := s.pendingUse, s.pendingAud, s.droppedAud
	if len(uses) == 0 && len(recs) == 0 && dropped == 0 {
		s.pmu.Unlock()
		return nil
	}
	s.pendingUse = make(map[string]LastUse)
	s.pendingAud = nil
	s.droppedAud = 0
	s.pmu.Unlock()
	if dropped > 0 {
		s.log.Warn("store: audit queue full, records dropped", "dropped", dropped)
		recs = append(recs, AuditRecord{
			Time: s.now(), Action: "audit-dropped", Outcome: "error",
			Detail: fmt.Sprintf("%d audit records dropped: queue of %d full", dropped, s.maxPend),
		})
	}
	if err := s.flushUses(ctx, uses); err != nil {
		s.requeue(uses, recs, dropped)
		return fmt.Errorf("store: flush: %w", err)
	}
	n, err := s.appendAudit(ctx, recs)
	if err != nil {
		s.requeue(nil, recs[n:], dropped)
		return fmt.Errorf("store: flush: %w", err)
	}
	return nil
}

// flushUses writes uses newer than the replica's. Uses of ids this instance
// does not know (revoked) are dropped. On error nothing is lost that the
// caller does not requeue: the writes are idempotent.
func (s *Etcd) flushUses(ctx context.Context, uses map[string]LastUse) error {
	var ops []clientv3.Op
	commit := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.cli.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for id, use := range uses {
		ref, ok := s.feed.ref(id)
		if !ok {
			continue
		}
		rec := s.rep.get(ref.hash)
		if rec == nil || rec.ID != id || !use.Time.After(rec.LastUse.Time) {
			continue
		}
		p := rec.clone()
		p.LastUse = use
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		key := s.pwKey(ref.user, id)
		ops = append(ops, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", ref.createRev)},
			[]clientv3.Op{clientv3.OpPut(key, string(v))}, nil))
		if len(ops) == maxTxnOps {
			if err := commit(); err != nil {
				return err
			}
		}
	}
	return commit()
}

// requeue puts a failed batch back in front of what arrived meanwhile.
func (s *Etcd) requeue(uses map[string]LastUse, recs []AuditRecord, dropped uint64) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for id, u := range uses {
		if cur, ok := s.pendingUse[id]; !ok || u.Time.After(cur.Time) {
			s.pendingUse[id] = u
		}
	}
	if dropped > 0 && len(recs) > 0 {
		recs = recs[:len(recs)-1] // the synthetic record is made again next time
	}
	for i := range recs {
		recs[i].Seq, recs[i].Prev, recs[i].Hash = 0, nil, nil
	}
	all := append(recs, s.pendingAud...)
	if over := len(all) - s.maxPend; over > 0 {
		all = all[over:]
		dropped += uint64(over)
	}
	s.pendingAud = all
	s.droppedAud += dropped
}
