package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is the etcd implementation of Store, for several Legate instances that
// share app passwords, audit log and revocations. Create it with OpenEtcd.
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
//	P audit/r/<%016x>    JSON AuditRecord, chained as in Bolt
//
// Verify never asks etcd: each instance keeps an in-memory replica of the
// pw/ records (see etcd_watch.go) fed by a watch from a known revision.
// Every instance must use the same HMAC key file.
type Etcd struct {
	cli      *clientv3.Client
	prefix   string
	key      []byte
	keyID    string
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	maxPend  int
	grace    time.Duration
	probe    time.Duration

	lifecycle

	pmu        sync.Mutex
	pendingUse map[string]LastUse
	pendingAud []AuditRecord
	droppedAud uint64
	kick       chan struct{}
	flushMu    sync.Mutex

	hash  *hasher
	dummy *AppPassword
	rep   *replica
	feed  *etcdFeed

	wmu sync.Mutex // one local Create or Revoke at a time: fewer txn conflicts

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ Store              = (*Etcd)(nil)
	_ RevocationNotifier = (*Etcd)(nil)
	_ Exporter           = (*Etcd)(nil)
	_ Importer           = (*Etcd)(nil)
)

// Defaults of EtcdOptions.
const (
	DefaultEtcdPrefix      = "/legate/"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultStaleGrace      = 60 * time.Second
)

// EtcdOptions configures OpenEtcd. Endpoints and KeyFile are required.
type EtcdOptions struct {
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
	// MaxPending bounds the audit queue as in BoltOptions; zero means
	// 100,000.
	MaxPending int
	// Logger receives errors and warnings; nil means discard.
	Logger *slog.Logger
	// Now is the clock for record times; nil means time.Now.
	Now func() time.Time
}

// ErrUnavailable is returned by Verify when the etcd store has not heard from
// a quorum for longer than StaleGrace: the replica may miss revocations, so
// the login service answers "unavailable" rather than trust it.
var ErrUnavailable = errors.New("store: etcd unreachable for longer than the stale grace; not trusting the local replica")

// OpenEtcd connects to etcd, loads the replica with one range read and
// starts the watch, probe and flush goroutines, which Close stops.
func OpenEtcd(ctx context.Context, opts EtcdOptions) (*Etcd, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("store: etcd: no endpoints")
	}
	if opts.KeyFile == "" {
		return nil, errors.New("store: etcd: no HMAC key file")
	}
	key, err := loadOrCreateKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	s := &Etcd{
		prefix:     opts.Prefix,
		key:        key,
		keyID:      keyID(key),
		log:        opts.Logger,
		now:        opts.Now,
		interval:   opts.FlushInterval,
		maxPend:    opts.MaxPending,
		grace:      opts.StaleGrace,
		probe:      opts.ProbeInterval,
		pendingUse: make(map[string]LastUse),
		kick:       make(chan struct{}, 1),
		hash:       newHasher(key),
		dummy:      newDummy(),
		rep:        newReplica(),
	}
	s.lifecycle.init()
	if s.prefix == "" {
		s.prefix = DefaultEtcdPrefix
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
	if s.interval <= 0 {
		s.interval = DefaultFlushInterval
	}
	if s.maxPend <= 0 {
		s.maxPend = DefaultMaxPending
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
	s.wg.Add(3)
	go s.feed.watch(bg, rev)
	go s.feed.prober(bg)
	go s.flusher(bg)
	return s, nil
}

// Close flushes pending last uses and audit records, stops the goroutines
// and closes the etcd client.
func (s *Etcd) Close() error {
	if !s.shut() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ferr := s.flush(ctx)
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
func (s *Etcd) OnRevoke(fn func(ids []string, user string)) { s.feed.onRevoke(fn) }

// KeyID identifies the HMAC key (not secret: a keyed hash of a constant).
func (s *Etcd) KeyID() string { return s.keyID }

// Key names.
func (s *Etcd) pwPrefix() string                { return s.prefix + "pw/" }
func (s *Etcd) pwUserPrefix(user string) string { return s.prefix + "pw/" + user + "\x00" }
func (s *Etcd) pwKey(user, id string) string    { return s.pwUserPrefix(user) + id }
func (s *Etcd) idxKey(hash []byte) string       { return fmt.Sprintf("%sidx/%x", s.prefix, hash) }
func (s *Etcd) idKey(id string) string          { return s.prefix + "id/" + id }
func (s *Etcd) usersPrefix() string             { return s.prefix + "users/" }
func (s *Etcd) userCountKey(user string) string { return s.prefix + "users/" + user }
func (s *Etcd) auditHeadKey() string            { return s.prefix + "audit/head" }
func (s *Etcd) auditPrefix() string             { return s.prefix + "audit/r/" }
func (s *Etcd) auditKey(seq uint64) string      { return fmt.Sprintf("%saudit/r/%016x", s.prefix, seq) }

// maxTxnOps keeps every transaction under etcd's default --max-txn-ops (128).
const maxTxnOps = 100
