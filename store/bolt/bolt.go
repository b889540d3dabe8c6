// Package bolt is the embedded implementation of store.Store, on one bbolt
// (go.etcd.io/bbolt) database file with its HMAC key file beside it.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/store"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket names. Layout:
//
//	passwords  id → JSON AppPassword
//	index      HMAC-SHA-256(key, Normalize(secret)) → id
//	byuser     user \x00 id → (empty); a prefix cursor lists or counts a user's passwords
//	audit      big-endian uint64 seq → JSON AuditRecord
//	meta       "audit_seq" → big-endian uint64 of the last audit record,
//	           "audit_head" → hash of the last audit record,
//	           "audit_anchor" → JSON store.AuditHead of the last pruned record
var (
	bucketPasswords = []byte("passwords")
	bucketIndex     = []byte("index")
	bucketByUser    = []byte("byuser")
	bucketAudit     = []byte("audit")
	bucketMeta      = []byte("meta")

	metaAuditSeq    = []byte("audit_seq")
	metaAuditHead   = []byte("audit_head")
	metaAuditAnchor = []byte("audit_anchor")
)

// DefaultOpenTimeout is Options.OpenTimeout's zero value.
const DefaultOpenTimeout = time.Second

// Options configures Open. The zero value of every field but Path works.
type Options struct {
	// Path of the bbolt database file (created 0600 if missing). Required.
	Path string
	// KeyFile is the HMAC key file; empty means "hmac.key" in Path's
	// directory. It must not be Path itself.
	KeyFile string
	// OpenTimeout is how long to wait for the database lock; zero means 1s.
	OpenTimeout time.Duration
	// FlushInterval is how often pending last uses and audit records are
	// written; zero means 2s.
	FlushInterval time.Duration
	// AuditBounds bound the audit queue and its retention (see
	// store.AuditBounds).
	store.AuditBounds
	// Logger receives flush errors and drop warnings; nil means discard.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is the bbolt implementation of store.Store. Create it with Open.
type Store struct {
	db      *bolt.DB
	path    string
	pidFile string
	log     *slog.Logger
	now     func() time.Time

	lc          store.Lifecycle // operations vs Close
	store.Queue                 // RecordUse, Audit, Flush, AuditStats
	batch       *store.Batcher
	flushMu     sync.Mutex // audit appends and pruning, one at a time (chain order)

	writeTxs atomic.Uint64 // read-write transactions committed (tests, metrics)

	// Verify's login path: the HMAC and the in-memory replica of the
	// passwords bucket. wmu is held by Create and Revoke across their write
	// transaction and the replica update that follows it.
	secrets *store.Secrets
	rep     *store.Replica
	wmu     sync.Mutex
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database and its HMAC key file,
// writes a pid file beside the database and starts the background flusher,
// which Close stops.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Path == "" {
		return nil, errors.New("store: open: no database path")
	}
	keyPath := opts.KeyFile
	if keyPath == "" {
		keyPath = filepath.Join(filepath.Dir(opts.Path), "hmac.key")
	}
	if filepath.Clean(keyPath) == filepath.Clean(opts.Path) {
		return nil, fmt.Errorf("store: open: key file %s must not be the database", keyPath)
	}
	b := &Store{
		path:    opts.Path,
		pidFile: opts.Path + ".pid",
		log:     opts.Logger,
		now:     opts.Now,
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	timeout := opts.OpenTimeout
	if timeout <= 0 {
		timeout = DefaultOpenTimeout
	}

	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, &lockedError{path: opts.Path, pid: readPid(b.pidFile)}
		}
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	b.db = db
	// The key is read only once we hold the database lock, so two processes
	// racing on first start cannot both create one.
	key, err := store.LoadKey(keyPath)
	if err != nil {
		db.Close()
		return nil, err
	}
	b.secrets = store.NewSecrets(key)
	err = b.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPasswords, bucketIndex, bucketByUser, bucketAudit, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: init buckets: %w", opts.Path, err)
	}
	if b.rep, err = loadReplica(db, b.log); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	if err := os.WriteFile(b.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		// The pid only improves an error message; do not refuse to start.
		b.log.Warn("store: cannot write pid file", "file", b.pidFile, "err", err)
	}
	b.batch = store.NewBatcher(b, store.BatcherOptions{
		Interval: opts.FlushInterval, AuditBounds: opts.AuditBounds, Logger: b.log, Now: b.now,
	})
	b.Queue = store.NewQueue(b.batch, &b.lc)
	return b, nil
}

// Close flushes pending last uses and audit records, stops the flusher and
// closes the database. Operations after Close return ErrClosed.
func (b *Store) Close() error {
	if !b.lc.Shut() {
		return store.ErrClosed
	}
	ferr := b.batch.Close(context.Background())
	cerr := b.db.Close()
	if data, err := os.ReadFile(b.pidFile); err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(os.Getpid()) {
		os.Remove(b.pidFile)
	}
	if ferr != nil {
		return ferr
	}
	if cerr != nil {
		return fmt.Errorf("store: close: %w", cerr)
	}
	return nil
}

// update runs fn in a read-write transaction, which bbolt fsyncs on commit,
// and counts it.
func (b *Store) update(fn func(tx *bolt.Tx) error) error {
	err := b.db.Update(fn)
	if err == nil {
		b.writeTxs.Add(1)
	}
	return err
}

// lockedError is returned when another process holds the database.
type lockedError struct {
	path string
	pid  int // 0: unknown
}

func (e *lockedError) Error() string {
	pid := "pid unknown"
	if e.pid > 0 {
		pid = "pid " + strconv.Itoa(e.pid)
	}
	return fmt.Sprintf("store: database %s is locked by another legate process (%s) — use the admin socket or stop it", e.path, pid)
}

func (e *lockedError) Unwrap() error { return store.ErrLocked }

func readPid(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
