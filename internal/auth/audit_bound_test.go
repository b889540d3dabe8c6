package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

// The audit log is bounded whatever login names clients type (issue 18.1):
// 1,000 failed logins with 8 KiB names, then 1,000 throttled attempts with
// them, grow a real bbolt database by less than 2 MB. Without the store's
// bounds the names alone are 8 MB.
func TestAuditBoundedLongLoginNames(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "legate.db")
	b, err := bolt.Open(ctx, bolt.Options{Path: path, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	static, err := directory.NewStatic(testUsers(t))
	if err != nil {
		t.Fatal(err)
	}
	thr := &fakeThrottler{}
	svc := New(Options{Store: b, Directory: static, Policy: testPolicy(), Throttle: thr, Logger: slog.New(slog.DiscardHandler)})
	size := func() int64 {
		t.Helper()
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	name := func(i int) string { return fmt.Sprintf("%d%s", i, strings.Repeat("n", 8<<10)) }
	for i := range 1000 {
		if res := svc.Login(ctx, req(name(i), "AAAA-BBBB-CCCC-DDDD")); res.Allowed() {
			t.Fatal("unknown user allowed")
		}
		if i%100 == 99 {
			size()
		}
	}
	thr.mu.Lock()
	thr.blocked = true
	thr.mu.Unlock()
	for i := range 1000 {
		svc.Login(ctx, req(name(i%10), "AAAA-BBBB-CCCC-DDDD"))
	}
	grown := size() - before
	t.Logf("database grew by %d bytes (%d → %d)", grown, before, before+grown)
	if grown >= 2<<20 {
		t.Errorf("database growth: got %d bytes, want under 2 MB", grown)
	}
	recs, err := b.AuditLog(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var logins, throttled uint64
	stored := 0
	for _, r := range recs {
		v, _ := json.Marshal(r)
		stored += len(v)
		if len(r.User) > store.MaxAuditField {
			t.Fatalf("audit user of %d bytes, want at most %d", len(r.User), store.MaxAuditField)
		}
		if r.Rule == "throttled" {
			throttled += max(r.Count, 1)
		} else if r.Action == "login" {
			logins++
		}
	}
	t.Logf("%d audit records, %d bytes of JSON", len(recs), stored)
	if stored >= 1<<20 {
		t.Errorf("stored audit records: got %d bytes, want under 1 MiB", stored)
	}
	if logins != 1000 || throttled != 1000 {
		t.Errorf("audit: got %d failed logins and %d throttled attempts, want 1000 each", logins, throttled)
	}
}
