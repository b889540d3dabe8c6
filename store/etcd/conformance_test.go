package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/etcd"
	"github.com/legate-proxy/legate/store/storetest"
)

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func closeOnCleanup(t testing.TB, s store.Store) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
}

// etcdHarness opens etcd stores on cluster e, each location a fresh prefix,
// all sharing one HMAC key.
func etcdHarness(t *testing.T, e *testenv.Etcd, mod ...func(*etcd.Options)) storetest.Harness {
	key := filepath.Join(t.TempDir(), "hmac.key")
	var n atomic.Int64
	return storetest.Harness{
		New: func(t *testing.T) string { return fmt.Sprintf("/t%d/", n.Add(1)) },
		Open: func(t *testing.T, prefix string) store.Store {
			return openEtcd(t, e, key, prefix, mod...)
		},
		Check: func(t *testing.T, s store.Store) {
			if err := s.(*etcd.Store).CheckIndex(context.Background()); err != nil {
				t.Error(err)
			}
		},
	}
}

func openEtcd(t testing.TB, e *testenv.Etcd, key, prefix string, mod ...func(*etcd.Options)) *etcd.Store {
	t.Helper()
	opts := etcd.Options{Endpoints: e.Endpoints(), Prefix: prefix, KeyFile: key,
		Logger: logger(t), FlushInterval: time.Hour, DialTimeout: 5 * time.Second}
	for _, m := range mod {
		m(&opts)
	}
	s, err := etcd.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, s)
	return s
}

func TestConformance(t *testing.T) {
	t.Run("1 member", func(t *testing.T) {
		storetest.Run(t, etcdHarness(t, testenv.StartEtcd(t, 1)))
	})
	t.Run("3 members", func(t *testing.T) {
		storetest.Run(t, etcdHarness(t, testenv.StartEtcd(t, 3)))
	})
}
