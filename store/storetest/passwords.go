package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/legate-proxy/legate/store"
)

func testCreateListVerify(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	p, secret, err := b.Create(ctx, store.CreateRequest{User: "  Alice ", Name: "Laptop", Scope: []string{"imap"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.User != "alice" {
		t.Errorf("user: got %q, want %q", p.User, "alice")
	}
	if len(p.ID) != 8 || strings.Trim(p.ID, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Errorf("id: got %q, want 8 lower-case base32 characters", p.ID)
	}
	if p.HashAlg != store.HashHMACSHA256 || len(p.Hash) != 32 {
		t.Errorf("hash: got alg %q len %d, want %q len 32", p.HashAlg, len(p.Hash), store.HashHMACSHA256)
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
	mixed := ""
	for i, c := range strings.ReplaceAll(secret, "-", " ") {
		if i%2 == 0 {
			mixed += strings.ToLower(string(c))
		} else {
			mixed += string(c)
		}
	}
	for _, tc := range []struct {
		name, user, secret string
		wantErr            error
	}{
		{"as shown", "alice", secret, nil},
		{"lower with dashes", "alice", strings.ToLower(secret), nil},
		{"upper no dashes", "alice", strings.ToUpper(strings.ReplaceAll(secret, "-", "")), nil},
		{"mixed with spaces", "alice", mixed, nil},
		{"user case and space", " ALICE ", secret, nil},
		{"wrong owner", "bob", secret, store.ErrNotFound},
		{"unknown user", "carol", secret, store.ErrNotFound},
		{"wrong secret", "alice", "AAAA-BBBB-CCCC-DDDD", store.ErrNotFound},
		{"empty", "alice", "", store.ErrNotFound},
		{"one char off", "alice", secret[:18], store.ErrNotFound},
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
	h.check(t, b)
}

func testCreateValidation(t *testing.T, h Harness) {
	b := h.open(t)
	for _, req := range []store.CreateRequest{{User: "", Name: "x"}, {User: "alice", Name: " "}, {User: "a\x00b", Name: "x"}} {
		if _, _, err := b.Create(context.Background(), req); err == nil {
			t.Errorf("Create(%+v): got nil error, want one", req)
		}
	}
}

func testLimit(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	for i := range store.DefaultLimit {
		mustCreate(t, b, "alice", fmt.Sprintf("dev%d", i))
	}
	_, _, err := b.Create(ctx, store.CreateRequest{User: "Alice", Name: "one more"})
	if !errors.Is(err, store.ErrLimit) {
		t.Fatalf("41st Create: got %v, want ErrLimit", err)
	}
	if got, want := err.Error(), "store: user alice already has 40 app passwords (the limit is 40): revoke one first"; got != want {
		t.Errorf("error text: got %q, want %q", got, want)
	}
	_, _, err = b.Create(ctx, store.CreateRequest{User: "alice", Name: "x", Limit: 3})
	if err == nil || !strings.Contains(err.Error(), "the limit is 3") {
		t.Errorf("Limit 3: got %v, want ErrLimit naming 3", err)
	}
	mustCreate(t, b, "bob", "dev")
	if _, err := b.Revoke(ctx, "alice", store.Selector{Name: "dev0"}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, b, "alice", "one more")
	h.check(t, b)
}

func testNameTaken(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	mustCreate(t, b, "alice", "Laptop")
	for _, name := range []string{"Laptop", "laptop", " LAPTOP "} {
		_, _, err := b.Create(ctx, store.CreateRequest{User: "alice", Name: name})
		if !errors.Is(err, store.ErrNameTaken) {
			t.Errorf("Create(%q): got %v, want ErrNameTaken", name, err)
		}
	}
}

func testRevoke(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	a1, s1 := mustCreate(t, b, "alice", "Laptop")
	a2, s2 := mustCreate(t, b, "alice", "Phone")
	a3, s3 := mustCreate(t, b, "alice", "Tablet")
	_, sb := mustCreate(t, b, "bob", "Laptop")

	got, err := b.Revoke(ctx, "alice", store.Selector{ID: a1.ID})
	if err != nil || len(got) != 1 || got[0].ID != a1.ID {
		t.Fatalf("Revoke by id: got %v, %v; want [%s]", ids(got), err, a1.ID)
	}
	if _, err := b.Verify(ctx, "alice", s1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Verify revoked: got %v, want ErrNotFound", err)
	}
	if _, err := b.Revoke(ctx, "alice", store.Selector{ID: a1.ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Revoke again: got %v, want ErrNotFound", err)
	}
	if _, err := b.Revoke(ctx, "bob", store.Selector{ID: a2.ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Revoke other user's id: got %v, want ErrNotFound", err)
	}
	got, err = b.Revoke(ctx, "alice", store.Selector{Name: "phone"})
	if err != nil || len(got) != 1 || got[0].ID != a2.ID {
		t.Fatalf("Revoke by name: got %v, %v; want [%s]", ids(got), err, a2.ID)
	}
	if _, err := b.Verify(ctx, "alice", s2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Verify revoked: got %v, want ErrNotFound", err)
	}
	if _, err := b.Verify(ctx, "alice", s3); err != nil {
		t.Errorf("Verify kept %s: %v", a3.ID, err)
	}
	h.check(t, b)
	mustCreate(t, b, "alice", "Watch")
	got, err = b.Revoke(ctx, "alice", store.Selector{All: true})
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
	if got, err := b.Revoke(ctx, "alice", store.Selector{All: true}); err != nil || len(got) != 0 {
		t.Errorf("Revoke all of nothing: got %v, %v; want none, nil", ids(got), err)
	}
	h.check(t, b)
	for _, sel := range []store.Selector{{}, {ID: "x", Name: "y"}, {ID: "x", All: true}} {
		if _, err := b.Revoke(ctx, "bob", sel); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Revoke(%+v): got %v, want a usage error", sel, err)
		}
	}
}

// CreateConcurrently runs workers×each Creates of user on the stores in
// turn and returns how many succeeded and how many hit the limit; any other
// error fails t.
func CreateConcurrently(t testing.TB, stores []store.Store, user string, workers, each int) (ok, limited int) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		other []error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%len(stores)]
			for i := range each {
				_, _, err := s.Create(context.Background(), store.CreateRequest{User: user, Name: fmt.Sprintf("w%d-%d", w, i)})
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, store.ErrLimit):
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
	return ok, limited
}

func testConcurrentCreates(t *testing.T, h Harness) {
	b := h.open(t)
	const workers, each = 20, 4
	ok, limited := CreateConcurrently(t, []store.Store{b}, "alice", workers, each)
	if ok != store.DefaultLimit || limited != workers*each-store.DefaultLimit {
		t.Errorf("got %d created and %d refused, want %d and %d", ok, limited, store.DefaultLimit, workers*each-store.DefaultLimit)
	}
	list, err := b.List(context.Background(), "alice")
	if err != nil || len(list) != store.DefaultLimit {
		t.Errorf("List: got %d, %v; want %d", len(list), err, store.DefaultLimit)
	}
	h.check(t, b)
}

func testClosed(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Create":      func() error { _, _, err := b.Create(ctx, store.CreateRequest{User: "a", Name: "b"}); return err },
		"List":        func() error { _, err := b.List(ctx, "a"); return err },
		"Users":       func() error { _, err := b.Users(ctx); return err },
		"Verify":      func() error { _, err := b.Verify(ctx, "a", "b"); return err },
		"Revoke":      func() error { _, err := b.Revoke(ctx, "a", store.Selector{All: true}); return err },
		"AuditLog":    func() error { _, err := b.AuditLog(ctx, store.AuditQuery{}); return err },
		"VerifyAudit": func() error { _, err := b.VerifyAudit(ctx); return err },
		"Flush":       func() error { return b.Flush(ctx) },
		"Close":       b.Close,
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", name, err)
		}
	}
	b.RecordUse("x", store.LastUse{}) // must not panic or block
	b.Audit(store.AuditRecord{Action: "login"})
}

func testContextCanceled(t *testing.T, h Harness) {
	b := h.open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Verify(ctx, "a", "b"); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify: got %v, want context.Canceled", err)
	}
	if _, _, err := b.Create(ctx, store.CreateRequest{User: "a", Name: "b"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Create: got %v, want context.Canceled", err)
	}
}

// Verify must see Create and Revoke as soon as they return.
func testCreateRevokeImmediate(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	for i := range 5 {
		p, secret := mustCreate(t, b, "alice", fmt.Sprintf("dev%d", i))
		got, err := b.Verify(ctx, "alice", secret)
		if err != nil || got.ID != p.ID {
			t.Fatalf("Verify right after Create %d: got %q, %v; want %s", i, got.ID, err, p.ID)
		}
		if _, err := b.Revoke(ctx, "alice", store.Selector{ID: p.ID}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Verify(ctx, "alice", secret); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Verify right after Revoke %d: got %v, want ErrNotFound", i, err)
		}
	}
	h.check(t, b)
}

// A caller mutating what Create or Verify returned must not change the store.
func testVerifyReturnsCopy(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.open(t)
	net := netip.MustParsePrefix("192.0.2.0/24")
	p, secret, err := b.Create(ctx, store.CreateRequest{User: "alice", Name: "Laptop", Scope: []string{"imap"}, Networks: []netip.Prefix{net}})
	if err != nil {
		t.Fatal(err)
	}
	p.Scope[0] = "create-result"
	got, err := b.Verify(ctx, "alice", secret)
	if err != nil {
		t.Fatal(err)
	}
	got.Scope[0] = "ldap"
	got.Networks[0] = netip.MustParsePrefix("0.0.0.0/0")
	got.Hash[0] ^= 0xff
	got.Name = "changed"
	again, err := b.Verify(ctx, "alice", secret)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again.Scope) != "[imap]" || fmt.Sprint(again.Networks) != "[192.0.2.0/24]" || again.Name != "Laptop" {
		t.Errorf("after mutating a returned copy: got scope %v networks %v name %q, want [imap] [192.0.2.0/24] Laptop", again.Scope, again.Networks, again.Name)
	}
	if fmt.Sprint(again.Hash) != fmt.Sprint(p.Hash) {
		t.Errorf("after mutating a returned copy: hash changed")
	}
}
