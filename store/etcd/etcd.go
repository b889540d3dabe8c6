// Package etcd is the implementation of store.Store that several Legate
// instances share, on etcd (go.etcd.io/etcd/client/v3).
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/legate-proxy/legate/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Store is the etcd implementation of store.Store, for several Legate instances that
// share app passwords, audit log and revocations. Create it with Open.
//
// Layout under Prefix (P):
//
//	P pw/<user>\x00<id>  JSON AppPassword (last use included)
//	P idx/<hex hash>     <user>\x00<id>: the hash→id index
//	P id/<id>            <user>: keeps ids unique across users
//	P users/<user>       decimal count of the user's app passwords; its
//	                     ModRevision is the fence every Create and Revoke
//	                     of that user compares on, so racing instances cannot
//	                     exceed the limit (deleted at zero: Users ranges it)
//	P audit/head         JSON {seq, hash} of the last audit record
//	P audit/r/<%016x>    JSON AuditRecord, chained (see store/audit.go)
//	P audit/anchor       JSON {seq, hash} of the last pruned audit record
//	P portal/ended/<hex> a portal sign-out (store.SignOuts), empty, with a
//	                     lease that runs out with the session (signouts.go)
//
// Verify never asks etcd: each instance keeps an in-memory replica of the
// pw/ records (see etcd_watch.go) fed by a watch from a known revision.
// Every instance must use the same HMAC key file.
type Store struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger
	now    func() time.Time
	grace  time.Duration
	probe  time.Duration

	lc          store.Lifecycle // operations vs Close
	store.Queue                 // RecordUse, Audit, Flush, AuditStats
	batch       *store.Batcher
	flushMu     sync.Mutex // this instance's audit appends and pruning, one at a time

	secrets *store.Secrets
	rep     *store.Replica
	feed    *etcdFeed

	wmu sync.Mutex // one local Create or Revoke at a time: fewer txn conflicts

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ store.Store              = (*Store)(nil)
	_ store.RevocationNotifier = (*Store)(nil)
	_ store.Exporter           = (*Store)(nil)
	_ store.Importer           = (*Store)(nil)
)

// Defaults of Options.
const (
	DefaultPrefix          = "/legate/"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultStaleGrace      = 60 * time.Second
)

// Options configures Open. Endpoints and KeyFile are required.
type Options struct {
	// Endpoints are etcd client URLs or host:port.
	Endpoints []string
	// Prefix of every key; empty means "/legate/". A missing trailing "/"
	// is added.
	Prefix string
	// TLS towards etcd; nil means plain TCP.
	TLS *tls.Config
	// Username and Password authenticate to etcd; empty means none.
	Username, Password string
	// DialTimeout bounds connecting; zero means 5s.
	DialTimeout time.Duration
	// KeyFile is the HMAC key file; every instance must use the same key
	// (copy the file). It is created 0600 if missing.
	KeyFile string
	// StaleGrace is how long Verify trusts the replica after losing touch
	// with an etcd quorum; after that it returns ErrUnavailable. Zero
	// means 60s.
	StaleGrace time.Duration
	// ProbeInterval is how often quorum and watch are checked; zero means
	// StaleGrace/4, at most 1s.
	ProbeInterval time.Duration
	// FlushInterval is how often pending last uses and audit records are
	// written; zero means 2s.
	FlushInterval time.Duration
	// AuditBounds bound the audit queue and its retention (see
	// store.AuditBounds).
	store.AuditBounds
	// Logger receives errors and warnings; nil means discard.
	Logger *slog.Logger
	// Now is the clock for record times; nil means time.Now.
	Now func() time.Time
}

// ErrUnavailable is returned by Verify when the etcd store has not heard from
// a quorum for longer than StaleGrace: the replica may miss revocations, so
// the login service answers "unavailable" rather than trust it.
var ErrUnavailable = errors.New("store: etcd unreachable for longer than the stale grace; not trusting the local replica")

// Open connects to etcd, loads the replica with one range read and
// starts the watch, probe and flush goroutines, which Close stops.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("store: etcd: no endpoints")
	}
	if opts.KeyFile == "" {
		return nil, errors.New("store: etcd: no HMAC key file")
	}
	key, err := store.LoadKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	s := &Store{
		prefix:  opts.Prefix,
		log:     opts.Logger,
		now:     opts.Now,
		grace:   opts.StaleGrace,
		probe:   opts.ProbeInterval,
		secrets: store.NewSecrets(key),
		rep:     store.NewReplica(),
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.grace <= 0 {
		s.grace = DefaultStaleGrace
	}
	if s.probe <= 0 {
		s.probe = min(s.grace/4, time.Second)
	}
	dial := opts.DialTimeout
	if dial <= 0 {
		dial = DefaultEtcdDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: dial,
		TLS:         opts.TLS,
		Username:    opts.Username,
		Password:    opts.Password,
		Logger:      zap.NewNop(),
		Context:     context.WithoutCancel(ctx),
		// Detect a dead member quickly and fail over to another.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("store: etcd: connect: %w", err)
	}
	s.cli = cli
	s.feed = newEtcdFeed(s)
	lctx, cancel := context.WithTimeout(ctx, dial)
	rev, err := s.feed.resync(lctx)
	cancel()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("store: etcd: load app passwords: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	s.cancel = stop
	s.wg.Add(2)
	go s.feed.watch(bg, rev)
	go s.feed.prober(bg)
	s.batch = store.NewBatcher(s, store.BatcherOptions{
		Interval: opts.FlushInterval, AuditBounds: opts.AuditBounds, Logger: s.log, Now: s.now,
	})
	s.Queue = store.NewQueue(s.batch, &s.lc)
	return s, nil
}

// Close flushes pending last uses and audit records, stops the goroutines
// and closes the etcd client.
func (s *Store) Close() error {
	if !s.lc.Shut() {
		return store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ferr := s.batch.Close(ctx)
	cancel()
	s.cancel()
	s.wg.Wait()
	cerr := s.cli.Close()
	if ferr != nil {
		return ferr
	}
	if cerr != nil && !errors.Is(cerr, context.Canceled) {
		return fmt.Errorf("store: etcd: close: %w", cerr)
	}
	return nil
}

// OnRevoke registers fn to be called with the ids of app passwords that
// disappear from etcd (revoked on this or any other instance), grouped by
// user. fn runs on the watch goroutine and must not block.
func (s *Store) OnRevoke(fn func(ids []string, user string)) { s.feed.onRevoke(fn) }

// KeyID identifies the HMAC key (not secret: a keyed hash of a constant).
func (s *Store) KeyID() string { return s.secrets.KeyID() }

// Key names.
func (s *Store) pwPrefix() string                { return s.prefix + "pw/" }
func (s *Store) pwUserPrefix(user string) string { return s.prefix + "pw/" + user + "\x00" }
func (s *Store) pwKey(user, id string) string    { return s.pwUserPrefix(user) + id }
func (s *Store) idxKey(hash []byte) string       { return fmt.Sprintf("%sidx/%x", s.prefix, hash) }
func (s *Store) idKey(id string) string          { return s.prefix + "id/" + id }
func (s *Store) usersPrefix() string             { return s.prefix + "users/" }
func (s *Store) userCountKey(user string) string { return s.prefix + "users/" + user }
func (s *Store) auditHeadKey() string            { return s.prefix + "audit/head" }
func (s *Store) auditAnchorKey() string          { return s.prefix + "audit/anchor" }
func (s *Store) auditPrefix() string             { return s.prefix + "audit/r/" }
func (s *Store) auditKey(seq uint64) string      { return fmt.Sprintf("%saudit/r/%016x", s.prefix, seq) }

// maxTxnOps keeps every transaction under etcd's default --max-txn-ops (128).
const maxTxnOps = 100
