package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testLogger sends the store's logs through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// openTest opens a store in dir (a new temp dir when empty) and closes it at
// the end of the test.
func openTest(t testing.TB, dir string, mod ...func(*BoltOptions)) *Bolt {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	opts := BoltOptions{Path: filepath.Join(dir, "legate.db"), Logger: testLogger(t), FlushInterval: time.Hour}
	for _, m := range mod {
		m(&opts)
	}
	b, err := OpenBolt(context.Background(), opts)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func mustCreate(t testing.TB, b *Bolt, user, name string) (AppPassword, string) {
	t.Helper()
	p, secret, err := b.Create(context.Background(), CreateRequest{User: user, Name: name})
	if err != nil {
		t.Fatalf("Create(%s, %s): %v", user, name, err)
	}
	return p, secret
}

func ids(ps []AppPassword) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func TestCreateListVerify(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	p, secret, err := b.Create(ctx, CreateRequest{User: "  Alice ", Name: "Laptop", Scope: []string{"imap"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.User != "alice" {
		t.Errorf("user: got %q, want %q", p.User, "alice")
	}
	if len(p.ID) != 8 || strings.Trim(p.ID, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Errorf("id: got %q, want 8 lower-case base32 characters", p.ID)
	}
	if p.HashAlg != HashHMACSHA256 || len(p.Hash) != 32 {
		t.Errorf("hash: got alg %q len %d, want %q len 32", p.HashAlg, len(p.Hash), HashHMACSHA256)
	}
	if len(secret) != 19 || strings.Count(secret, "-") != 3 {
		t.Errorf("secret %q: want XXXX-XXXX-XXXX-XXXX", secret)
	}
	p2, _ := mustCreate(t, b, "alice", "Phone")
	mustCreate(t, b, "bob", "Laptop") // same name, other user: fine

	list, err := b.List(ctx, "ALICE")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(ids(list)), fmt.Sprint([]string{p.ID, p2.ID}); got != want {
		t.Errorf("List: got %s, want %s (oldest first)", got, want)
	}
	users, err := b.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(users), "[alice bob]"; got != want {
		t.Errorf("Users: got %s, want %s", got, want)
	}

	lower := strings.ToLower(secret)
	upperNoDash := strings.ToUpper(strings.ReplaceAll(secret, "-", ""))
	mixedSpaces := ""
	for i, c := range strings.ReplaceAll(secret, "-", " ") {
		if i%2 == 0 {
			mixedSpaces += strings.ToLower(string(c))
		} else {
			mixedSpaces += string(c)
		}
	}
	for _, tc := range []struct {
		name, user, secret string
		wantErr            error
	}{
		{"as shown", "alice", secret, nil},
		{"lower with dashes", "alice", lower, nil},
		{"upper no dashes", "alice", upperNoDash, nil},
		{"mixed with spaces", "alice", mixedSpaces, nil},
		{"user case and space", " ALICE ", secret, nil},
		{"wrong owner", "bob", secret, ErrNotFound},
		{"unknown user", "carol", secret, ErrNotFound},
		{"wrong secret", "alice", "AAAA-BBBB-CCCC-DDDD", ErrNotFound},
		{"empty", "alice", "", ErrNotFound},
		{"one char off", "alice", secret[:18], ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.Verify(ctx, tc.user, tc.secret)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify(%q): got err %v, want %v", tc.secret, err, tc.wantErr)
			}
			if tc.wantErr == nil && got.ID != p.ID {
				t.Errorf("Verify: got id %s, want %s", got.ID, p.ID)
			}
			if tc.wantErr == nil && (len(got.Scope) != 1 || got.Scope[0] != "imap") {
				t.Errorf("Verify: got scope %v, want [imap]", got.Scope)
			}
		})
	}
}

func TestCreateValidation(t *testing.T) {
	b := openTest(t, "")
	for _, req := range []CreateRequest{{User: "", Name: "x"}, {User: "alice", Name: " "}, {User: "a\x00b", Name: "x"}} {
		if _, _, err := b.Create(context.Background(), req); err == nil {
			t.Errorf("Create(%+v): got nil error, want one", req)
		}
	}
}

func TestLimit(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	for i := range DefaultLimit {
		mustCreate(t, b, "alice", fmt.Sprintf("dev%d", i))
	}
	_, _, err := b.Create(ctx, CreateRequest{User: "Alice", Name: "one more"})
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("41st Create: got %v, want ErrLimit", err)
	}
	if got, want := err.Error(), "store: user alice already has 40 app passwords (the limit is 40): revoke one first"; got != want {
		t.Errorf("error text: got %q, want %q", got, want)
	}
	// A custom limit below the current count is also enforced.
	_, _, err = b.Create(ctx, CreateRequest{User: "alice", Name: "x", Limit: 3})
	if err == nil || !strings.Contains(err.Error(), "the limit is 3") {
		t.Errorf("Limit 3: got %v, want ErrLimit naming 3", err)
	}
	// Other users are unaffected; revoking one frees a slot.
	mustCreate(t, b, "bob", "dev")
	if _, err := b.Revoke(ctx, "alice", Selector{Name: "dev0"}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, b, "alice", "one more")
}

func TestNameTaken(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	mustCreate(t, b, "alice", "Laptop")
	for _, name := range []string{"Laptop", "laptop", " LAPTOP "} {
		_, _, err := b.Create(ctx, CreateRequest{User: "alice", Name: name})
		if !errors.Is(err, ErrNameTaken) {
			t.Errorf("Create(%q): got %v, want ErrNameTaken", name, err)
		}
	}
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	a1, s1 := mustCreate(t, b, "alice", "Laptop")
	a2, s2 := mustCreate(t, b, "alice", "Phone")
	a3, s3 := mustCreate(t, b, "alice", "Tablet")
	_, sb := mustCreate(t, b, "bob", "Laptop")

	// By id.
	got, err := b.Revoke(ctx, "alice", Selector{ID: a1.ID})
	if err != nil || len(got) != 1 || got[0].ID != a1.ID {
		t.Fatalf("Revoke by id: got %v, %v; want [%s]", ids(got), err, a1.ID)
	}
	if _, err := b.Verify(ctx, "alice", s1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify revoked: got %v, want ErrNotFound", err)
	}
	if _, err := b.Revoke(ctx, "alice", Selector{ID: a1.ID}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke again: got %v, want ErrNotFound", err)
	}
	// Another user's id or name is not found.
	if _, err := b.Revoke(ctx, "bob", Selector{ID: a2.ID}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke other user's id: got %v, want ErrNotFound", err)
	}
	// By name, case-insensitive.
	got, err = b.Revoke(ctx, "alice", Selector{Name: "phone"})
	if err != nil || len(got) != 1 || got[0].ID != a2.ID {
		t.Fatalf("Revoke by name: got %v, %v; want [%s]", ids(got), err, a2.ID)
	}
	if _, err := b.Verify(ctx, "alice", s2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify revoked: got %v, want ErrNotFound", err)
	}
	if _, err := b.Verify(ctx, "alice", s3); err != nil {
		t.Errorf("Verify kept %s: %v", a3.ID, err)
	}
	if err := b.CheckIndex(); err != nil {
		t.Fatalf("index after revoke: %v", err)
	}
	// All.
	mustCreate(t, b, "alice", "Watch")
	got, err = b.Revoke(ctx, "alice", Selector{All: true})
	if err != nil || len(got) != 2 {
		t.Fatalf("Revoke all: got %v, %v; want 2", ids(got), err)
	}
	if list, _ := b.List(ctx, "alice"); len(list) != 0 {
		t.Errorf("List after revoke all: got %v, want none", ids(list))
	}
	if users, _ := b.Users(ctx); fmt.Sprint(users) != "[bob]" {
		t.Errorf("Users: got %v, want [bob]", users)
	}
	if _, err := b.Verify(ctx, "bob", sb); err != nil {
		t.Errorf("bob unaffected: %v", err)
	}
	if err := b.CheckIndex(); err != nil {
		t.Fatalf("index after revoke all: %v", err)
	}
	// Bad selectors.
	for _, sel := range []Selector{{}, {ID: "x", Name: "y"}, {ID: "x", All: true}} {
		if _, err := b.Revoke(ctx, "bob", sel); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Revoke(%+v): got %v, want a usage error", sel, err)
		}
	}
}

func TestConcurrentCreatesStopAtLimit(t *testing.T) {
	b := openTest(t, "")
	const workers, each = 20, 4
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		ok, limited int
		other       []error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, _, err := b.Create(context.Background(), CreateRequest{User: "alice", Name: fmt.Sprintf("w%d-%d", w, i)})
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrLimit):
					limited++
				default:
					other = append(other, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("unexpected errors: %v", other)
	}
	if ok != DefaultLimit || limited != workers*each-DefaultLimit {
		t.Errorf("got %d created and %d refused, want %d and %d", ok, limited, DefaultLimit, workers*each-DefaultLimit)
	}
	list, err := b.List(context.Background(), "alice")
	if err != nil || len(list) != DefaultLimit {
		t.Errorf("List: got %d, %v; want %d", len(list), err, DefaultLimit)
	}
	if err := b.CheckIndex(); err != nil {
		t.Error(err)
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Create":      func() error { _, _, err := b.Create(ctx, CreateRequest{User: "a", Name: "b"}); return err },
		"List":        func() error { _, err := b.List(ctx, "a"); return err },
		"Users":       func() error { _, err := b.Users(ctx); return err },
		"Verify":      func() error { _, err := b.Verify(ctx, "a", "b"); return err },
		"Revoke":      func() error { _, err := b.Revoke(ctx, "a", Selector{All: true}); return err },
		"AuditLog":    func() error { _, err := b.AuditLog(ctx, AuditQuery{}); return err },
		"VerifyAudit": func() error { _, err := b.VerifyAudit(ctx); return err },
		"Flush":       func() error { return b.Flush(ctx) },
		"Close":       b.Close,
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", name, err)
		}
	}
	// Must not panic or block.
	b.RecordUse("x", LastUse{})
	b.Audit(AuditRecord{Action: "login"})
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	path := filepath.Join(dir, "legate.db")
	if pid := readPid(path + ".pid"); pid != os.Getpid() {
		t.Errorf("pid file: got %d, want %d", pid, os.Getpid())
	}
	start := time.Now()
	_, err := OpenBolt(context.Background(), BoltOptions{Path: path, OpenTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("database %s is locked by another legate process (pid %d) — use the admin socket or stop it", path, os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error text: got %q, want it to contain %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v, want about the 100ms timeout", d)
	}
}

func TestPidFileRemovedOnClose(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "legate.db.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file after Close: got %v, want it gone", err)
	}
}

func TestContextCanceled(t *testing.T) {
	b := openTest(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Verify(ctx, "a", "b"); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify: got %v, want context.Canceled", err)
	}
}
