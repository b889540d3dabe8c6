package etcd

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/legate-proxy/legate/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxTxnRetries bounds how often Create and Revoke retry after another
// instance changed the same user between their read and their write.
const maxTxnRetries = 200

// userSnap is one user's app passwords and the fence (the ModRevision of
// the users/<user> counter key) at one etcd revision.
type userSnap struct {
	ps    []store.AppPassword
	fence int64
	rev   int64 // the revision read
}

// snapshot reads the user's records and counter in one read-only txn, so both
// are from the same revision.
func (s *Store) snapshot(ctx context.Context, user string) (userSnap, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.pwUserPrefix(user), clientv3.WithPrefix()),
		clientv3.OpGet(s.userCountKey(user)),
	).Commit()
	if err != nil {
		return userSnap{}, err
	}
	snap := userSnap{rev: resp.Header.Revision}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		p, err := store.UnmarshalRecord(string(kv.Key), kv.Value)
		if err != nil {
			return userSnap{}, err
		}
		snap.ps = append(snap.ps, p)
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		snap.fence = kvs[0].ModRevision
	}
	slices.SortFunc(snap.ps, func(a, b store.AppPassword) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return snap, nil
}

// fenceCmp is true when the user's counter has not changed since snap.
func (s *Store) fenceCmp(user string, snap userSnap) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(s.userCountKey(user)), "=", snap.fence)
}

// countOp sets the user's counter to n, deleting it at zero.
func (s *Store) countOp(user string, n int) clientv3.Op {
	if n <= 0 {
		return clientv3.OpDelete(s.userCountKey(user))
	}
	return clientv3.OpPut(s.userCountKey(user), strconv.Itoa(n))
}

// Create generates an app password. The limit and name checks read one
// snapshot of the user; the write is a txn that succeeds only if the user's
// counter, the secret's index key and the id key are unchanged, so two
// instances racing cannot exceed the limit. It returns once the write is
// committed by a quorum and applied to this instance's replica.
func (s *Store) Create(ctx context.Context, req store.CreateRequest) (store.AppPassword, string, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return store.AppPassword{}, "", err
	}
	defer s.lc.End()
	user, name, limit, err := checkCreate(req)
	if err != nil {
		return store.AppPassword{}, "", err
	}
	secret := store.Generate()
	h := s.secrets.Sum(secret)
	p := store.AppPassword{
		User: user, Name: name, Created: s.now().UTC(), Expires: req.Expires,
		Scope: slices.Clone(req.Scope), Networks: slices.Clone(req.Networks),
		HashAlg: store.HashHMACSHA256, Hash: h[:],
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tried := false // a txn whose outcome is unknown (connection lost)
	for range maxTxnRetries {
		snap, err := s.snapshot(ctx, user)
		if err != nil {
			if transient(ctx, err) {
				continue
			}
			return store.AppPassword{}, "", fmt.Errorf("store: create: %w", err)
		}
		if tried && slices.ContainsFunc(snap.ps, func(e store.AppPassword) bool { return e.ID == p.ID && hmac.Equal(e.Hash, p.Hash) }) {
			s.feed.waitApplied(ctx, snap.rev) // the lost reply's txn did commit
			return p, secret, nil
		}
		tried = false
		if len(snap.ps) >= limit {
			return store.AppPassword{}, "", store.Errorf(store.ErrLimit, "store: user %s already has %d app passwords (the limit is %d): revoke one first", user, len(snap.ps), limit)
		}
		for _, e := range snap.ps {
			if strings.EqualFold(e.Name, name) {
				return store.AppPassword{}, "", store.Errorf(store.ErrNameTaken, "store: user %s already has an app password named %q (id %s)", user, e.Name, e.ID)
			}
		}
		p.ID = store.NewID()
		v, err := store.MarshalRecord(p)
		if err != nil {
			return store.AppPassword{}, "", fmt.Errorf("store: create: %w", err)
		}
		resp, err := s.cli.Txn(ctx).If(
			s.fenceCmp(user, snap),
			clientv3.Compare(clientv3.CreateRevision(s.idxKey(p.Hash)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.idKey(p.ID)), "=", 0),
		).Then(
			s.countOp(user, len(snap.ps)+1),
			clientv3.OpPut(s.pwKey(user, p.ID), string(v)),
			clientv3.OpPut(s.idxKey(p.Hash), user+"\x00"+p.ID),
			clientv3.OpPut(s.idKey(p.ID), user),
		).Commit()
		if err != nil {
			if transient(ctx, err) {
				tried = true
				continue
			}
			return store.AppPassword{}, "", fmt.Errorf("store: create: %w", err)
		}
		if resp.Succeeded {
			s.feed.waitApplied(ctx, resp.Header.Revision)
			return p, secret, nil
		}
		// Another instance changed this user, or (never in practice) the
		// id or secret collided: read again and retry.
	}
	return store.AppPassword{}, "", fmt.Errorf("store: create: user %s is changing too fast, try again", user)
}

// checkCreate validates and normalises a CreateRequest as Store does.
func checkCreate(req store.CreateRequest) (user, name string, limit int, err error) {
	user = store.NormalizeUser(req.User)
	name = strings.TrimSpace(req.Name)
	switch {
	case user == "":
		return "", "", 0, errors.New("store: create: no user")
	case strings.ContainsRune(user, 0):
		return "", "", 0, errors.New("store: create: user name contains NUL")
	case name == "":
		return "", "", 0, errors.New("store: create: an app password needs a name (the device, e.g. \"Laptop\")")
	}
	limit = req.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	return user, name, limit, nil
}

// List returns user's app passwords, oldest first, read from etcd (not the
// replica) with pending last uses merged in.
func (s *Store) List(ctx context.Context, user string) ([]store.AppPassword, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.lc.End()
	snap, err := s.snapshot(ctx, store.NormalizeUser(user))
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	for i := range snap.ps {
		snap.ps[i].LastUse = s.batch.MergeUse(snap.ps[i].ID, snap.ps[i].LastUse)
	}
	return snap.ps, nil
}

// Users returns every user with at least one app password, sorted.
func (s *Store) Users(ctx context.Context) ([]string, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.lc.End()
	resp, err := s.cli.Get(ctx, s.usersPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	var users []string
	for _, kv := range resp.Kvs {
		users = append(users, strings.TrimPrefix(string(kv.Key), s.usersPrefix()))
	}
	return users, nil
}

// Revoke deletes the selected app passwords of user with their index and id
// keys in one txn fenced on the user's counter. When it returns, this
// instance's replica no longer has them; other instances drop them when
// their watch delivers the deletes (and call their OnRevoke functions).
func (s *Store) Revoke(ctx context.Context, user string, sel store.Selector) ([]store.AppPassword, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.lc.End()
	user = store.NormalizeUser(user)
	if err := checkSelector(sel); err != nil {
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var done, unsure []store.AppPassword // unsure: a txn whose reply was lost
	for range maxTxnRetries {
		snap, err := s.snapshot(ctx, user)
		if err != nil {
			if transient(ctx, err) {
				continue
			}
			return nil, fmt.Errorf("store: revoke: %w", err)
		}
		for _, p := range unsure {
			if !slices.ContainsFunc(snap.ps, func(e store.AppPassword) bool { return e.ID == p.ID }) {
				done = append(done, p) // it did commit
			}
		}
		unsure = nil
		revoked := selectRevoked(snap.ps, sel)
		if len(revoked) == 0 {
			if len(done) > 0 || sel.All {
				return done, nil
			}
			return nil, store.ErrNotFound
		}
		// 3 ops per password plus the counter must stay under etcd's
		// --max-txn-ops (default 128): more than revokeChunk (only with
		// a raised limit or imported records) are revoked in several
		// fenced txns.
		batch := revoked[:min(len(revoked), revokeChunk)]
		ops := []clientv3.Op{s.countOp(user, len(snap.ps)-len(batch))}
		for _, p := range batch {
			ops = append(ops,
				clientv3.OpDelete(s.pwKey(user, p.ID)),
				clientv3.OpDelete(s.idxKey(p.Hash)),
				clientv3.OpDelete(s.idKey(p.ID)))
		}
		resp, err := s.cli.Txn(ctx).If(s.fenceCmp(user, snap)).Then(ops...).Commit()
		if err != nil {
			if transient(ctx, err) {
				unsure = batch
				continue
			}
			return nil, fmt.Errorf("store: revoke: %w", err)
		}
		if !resp.Succeeded {
			continue // another instance changed this user: read again
		}
		s.feed.waitApplied(ctx, resp.Header.Revision)
		for _, p := range batch {
			s.batch.Forget(p.ID)
		}
		done = append(done, batch...)
		if len(batch) == len(revoked) {
			return done, nil
		}
	}
	return nil, fmt.Errorf("store: revoke: user %s is changing too fast, try again", user)
}

// revokeChunk is how many app passwords one Revoke txn deletes at most.
const revokeChunk = 40

// transient reports whether err is a lost connection or leader that a retry
// on another member may fix (while ctx lasts); it pauses briefly first.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	code := status.Code(err)
	var ee interface{ Code() codes.Code } // etcd's rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
	default:
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

func checkSelector(sel store.Selector) error {
	n := 0
	for _, set := range []bool{sel.ID != "", sel.Name != "", sel.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("store: revoke: set exactly one of id, name or all")
	}
	return nil
}

func selectRevoked(all []store.AppPassword, sel store.Selector) []store.AppPassword {
	var out []store.AppPassword
	for _, p := range all {
		switch {
		case sel.All,
			sel.ID != "" && p.ID == strings.ToLower(strings.TrimSpace(sel.ID)),
			sel.Name != "" && strings.EqualFold(p.Name, strings.TrimSpace(sel.Name)):
			out = append(out, p)
		}
	}
	return out
}

// Verify finds the app password of user whose secret this is, in the
// in-memory replica, with the same constant-work steps as store/bolt (see
// store.Secrets.Match). When the replica has not been confirmed current for
// StaleGrace it returns ErrUnavailable (not store.ErrNotFound), which the
// login service answers with "unavailable".
func (s *Store) Verify(ctx context.Context, user, secret string) (store.AppPassword, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return store.AppPassword{}, err
	}
	defer s.lc.End()
	if !s.feed.fresh() {
		return store.AppPassword{}, ErrUnavailable
	}
	p, ok := s.secrets.Match(s.rep, user, secret)
	p.LastUse = s.batch.MergeUse(p.ID, p.LastUse)
	if !ok {
		return store.AppPassword{}, store.ErrNotFound
	}
	return p, nil
}

// AppPasswordsByID implements store.InMemory from the replica, which the
// watch keeps current; it refuses while the replica may miss revocations.
func (s *Store) AppPasswordsByID(ctx context.Context, ids map[string]struct{}) (map[string]store.AppPassword, error) {
	if err := s.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.lc.End()
	if !s.feed.fresh() {
		return nil, ErrUnavailable
	}
	return s.rep.ByIDs(ids), nil
}

var _ store.InMemory = (*Store)(nil)
