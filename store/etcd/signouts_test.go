package etcd_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store"
)

// TestEtcdSignOutsShared: a portal sign-out recorded on one instance is
// seen by another at once, other ids are not, and the record runs out with
// the session's lifetime (a lease), so nothing accumulates.
func TestEtcdSignOutsShared(t *testing.T) {
	e := testenv.StartEtcd(t, 1)
	key := filepath.Join(t.TempDir(), "hmac.key")
	var a, b store.SignOuts = openEtcd(t, e, key, "/so/"), openEtcd(t, e, key, "/so/")
	ctx := context.Background()

	if ended, err := b.SessionEnded(ctx, "sess-1"); err != nil || ended {
		t.Fatalf("before any sign-out: ended %v, %v; want false", ended, err)
	}
	if err := a.EndSession(ctx, "sess-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ended, err := b.SessionEnded(ctx, "sess-1"); err != nil || !ended {
		t.Errorf("signed out on A, asked on B: ended %v, %v; want true", ended, err)
	}
	if ended, err := b.SessionEnded(ctx, "sess-2"); err != nil || ended {
		t.Errorf("another session: ended %v, %v; want false", ended, err)
	}
	// Ids are hex-encoded in the key: one with a slash names no other key.
	if err := a.EndSession(ctx, "x/../sess-3", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ended, _ := b.SessionEnded(ctx, "sess-3"); ended {
		t.Error("sess-3 ended by a sign-out of x/../sess-3")
	}
	if ended, _ := b.SessionEnded(ctx, strings.Repeat("x", 300)); !ended {
		t.Error("an over-long id counts as a session this portal handed out")
	}

	// A record lasts until the session could not be used anyway.
	if err := a.EndSession(ctx, "short", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if ended, _ := b.SessionEnded(ctx, "short"); !ended {
		t.Fatal("short-lived sign-out not seen")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ended, err := b.SessionEnded(ctx, "short")
		if err != nil {
			t.Fatal(err)
		}
		if !ended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a sign-out record outlived its session by 15 s, want it dropped (lease)")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
