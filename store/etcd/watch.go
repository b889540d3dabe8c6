package etcd

import (
	"context"
	"crypto/sha256"
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/store"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdFeed keeps the Store replica current. The replica is changed only here,
// in etcd revision order:
//
//   - resync: one range read of every pw/ record at revision R replaces the
//     replica (at open, and after any loss of the watch);
//   - watch: a watch on pw/ from R+1 (with WithRequireLeader, so a member
//     that loses quorum ends it) applies puts and deletes.
//
// Create and Revoke wait until the watch has applied their own revision, so
// Verify sees a write before the call returns, and the replica never goes
// back in time.
//
// Freshness: every ProbeInterval the prober does a linearizable Get (which
// needs a quorum) and asks the watch stream for a progress notification. Once
// the watch has applied the Get's revision, the replica is known to be
// current as of the time the Get started (lastOK). Verify refuses with
// ErrUnavailable when lastOK is older than StaleGrace.
type etcdFeed struct {
	s    *Store
	base time.Time // lastOK and probeAt are offsets from base (monotonic)

	mu       sync.Mutex
	byID     map[string]etcdRef
	applied  int64
	advanced chan struct{} // closed and replaced whenever applied grows
	probeRev int64         // revision of the last successful probe
	probeAt  time.Duration
	cbs      []func(ids []string, user string)

	lastOK atomic.Int64 // time.Duration since base
}

// etcdRef is what the feed knows about a replica record by id.
type etcdRef struct {
	user      string
	hash      [sha256.Size]byte
	createRev int64
}

func newEtcdFeed(s *Store) *etcdFeed {
	return &etcdFeed{s: s, base: time.Now(), byID: make(map[string]etcdRef), advanced: make(chan struct{})}
}

func (f *etcdFeed) since() time.Duration { return time.Since(f.base) }

// fresh reports whether the replica was current within the stale grace.
func (f *etcdFeed) fresh() bool {
	return f.since()-time.Duration(f.lastOK.Load()) <= f.s.grace
}

func (f *etcdFeed) onRevoke(fn func(ids []string, user string)) {
	f.mu.Lock()
	f.cbs = append(f.cbs, fn)
	f.mu.Unlock()
}

// ref returns the replica's reference for id.
func (f *etcdFeed) ref(id string) (etcdRef, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.byID[id]
	return r, ok
}

// splitPwKey parses "<prefix>pw/<user>\x00<id>".
func (f *etcdFeed) splitPwKey(k []byte) (user, id string, ok bool) {
	rest, found := strings.CutPrefix(string(k), f.s.pwPrefix())
	if !found {
		return "", "", false
	}
	return strings.Cut(rest, "\x00")
}

// resync replaces the replica with a fresh range read and returns its
// revision. App passwords that disappeared are reported as revoked.
func (f *etcdFeed) resync(ctx context.Context) (int64, error) {
	start := f.since()
	resp, err := f.s.cli.Get(ctx, f.s.pwPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	ps := make([]store.AppPassword, 0, len(resp.Kvs))
	byID := make(map[string]etcdRef, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		_, id, ok := f.splitPwKey(kv.Key)
		if !ok {
			continue
		}
		p, err := store.UnmarshalRecord(id, kv.Value)
		if err != nil || !store.Usable(p) {
			f.s.log.Warn("store: etcd: app password that cannot be used; revoke it", "id", id, "err", err)
			continue
		}
		ps = append(ps, p)
		byID[id] = etcdRef{user: p.User, hash: [sha256.Size]byte(p.Hash), createRev: kv.CreateRevision}
	}
	f.mu.Lock()
	gone := make(map[string][]string)
	for id, r := range f.byID {
		if _, ok := byID[id]; !ok {
			gone[r.user] = append(gone[r.user], id)
		}
	}
	f.byID = byID
	f.s.rep.Replace(ps)
	f.advanceLocked(resp.Header.Revision)
	cbs := f.cbs
	f.mu.Unlock()
	f.lastOK.Store(int64(start))
	notify(cbs, gone)
	return resp.Header.Revision, nil
}

// advanceLocked records that everything up to rev is applied.
func (f *etcdFeed) advanceLocked(rev int64) {
	if rev <= f.applied {
		return
	}
	f.applied = rev
	close(f.advanced)
	f.advanced = make(chan struct{})
	if f.probeRev != 0 && rev >= f.probeRev {
		f.lastOK.Store(int64(f.probeAt))
		f.probeRev = 0
	}
}

// apply applies one watch response's events in order.
func (f *etcdFeed) apply(evs []*clientv3.Event) {
	gone := make(map[string][]string)
	f.mu.Lock()
	for _, ev := range evs {
		user, id, ok := f.splitPwKey(ev.Kv.Key)
		if !ok {
			continue
		}
		switch ev.Type {
		case mvccpb.PUT:
			p, err := store.UnmarshalRecord(id, ev.Kv.Value)
			if err != nil || !store.Usable(p) {
				f.s.log.Warn("store: etcd: app password that cannot be used; revoke it", "id", id, "err", err)
				continue
			}
			f.s.rep.Put(p)
			f.byID[id] = etcdRef{user: p.User, hash: [sha256.Size]byte(p.Hash), createRev: ev.Kv.CreateRevision}
		case mvccpb.DELETE:
			if r, ok := f.byID[id]; ok {
				f.s.rep.Remove(r.hash[:], id)
				delete(f.byID, id)
				gone[user] = append(gone[user], id)
			}
		}
	}
	if n := len(evs); n > 0 {
		f.advanceLocked(evs[n-1].Kv.ModRevision)
	}
	cbs := f.cbs
	f.mu.Unlock()
	notify(cbs, gone)
}

func notify(cbs []func([]string, string), gone map[string][]string) {
	if len(gone) == 0 {
		return
	}
	users := make([]string, 0, len(gone))
	for u := range gone {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		for _, fn := range cbs {
			fn(gone[u], u)
		}
	}
}

// waitApplied waits until the watch has applied rev, for at most 5s (then
// the write is committed but this instance's replica lags; it is logged).
func (f *etcdFeed) waitApplied(ctx context.Context, rev int64) {
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	for {
		f.mu.Lock()
		if f.applied >= rev {
			f.mu.Unlock()
			return
		}
		ch := f.advanced
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timer.C:
			f.s.log.Warn("store: etcd: watch has not caught up with a write after 5s", "revision", rev)
			return
		}
	}
}

// watch is the goroutine that keeps the replica current; rev is the
// revision the replica was loaded at. It resyncs after any watch loss.
func (f *etcdFeed) watch(ctx context.Context, rev int64) {
	defer f.s.wg.Done()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if rev == 0 {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			r, err := f.resync(rctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					f.s.log.Warn("store: etcd: resync failed; retrying", "err", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			rev = r
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := f.s.cli.Watch(wctx, f.s.pwPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if !errors.Is(err, context.Canceled) {
					f.s.log.Warn("store: etcd: watch lost; resyncing", "err", err)
				}
				break
			}
			if resp.Canceled {
				break
			}
			if resp.IsProgressNotify() {
				f.mu.Lock()
				f.advanceLocked(resp.Header.Revision)
				f.mu.Unlock()
				continue
			}
			f.apply(resp.Events)
		}
		cancel()
		rev = 0 // resync from a fresh range read
	}
}

// prober is the goroutine that checks quorum and watch every ProbeInterval.
func (f *etcdFeed) prober(ctx context.Context) {
	defer f.s.wg.Done()
	t := time.NewTicker(f.s.probe)
	defer t.Stop()
	timeout := max(2*f.s.probe, 200*time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := f.since()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := f.s.cli.Get(pctx, f.s.prefix+"health", clientv3.WithCountOnly())
		if err == nil {
			f.mu.Lock()
			f.probeRev, f.probeAt = resp.Header.Revision, start
			if f.applied >= resp.Header.Revision {
				f.lastOK.Store(int64(start))
				f.probeRev = 0
			}
			f.mu.Unlock()
			// The stream key is the metadata of WithRequireLeader, as in watch.
			_ = f.s.cli.RequestProgress(clientv3.WithRequireLeader(pctx))
		}
		cancel()
	}
}
