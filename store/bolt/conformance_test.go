package bolt_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
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

// Harness opens bbolt stores in temp directories sharing one HMAC key.
func harness(t *testing.T) storetest.Harness {
	key := filepath.Join(t.TempDir(), "hmac.key")
	return storetest.Harness{
		New: func(t *testing.T) string { return t.TempDir() },
		Open: func(t *testing.T, dir string) store.Store {
			b, err := bolt.Open(context.Background(), bolt.Options{
				Path: filepath.Join(dir, "legate.db"), KeyFile: key, Logger: logger(t), FlushInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := b.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			return b
		},
		Check: func(t *testing.T, s store.Store) {
			if err := s.(*bolt.Store).CheckIndex(); err != nil {
				t.Error(err)
			}
		},
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, harness(t)) }
