package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
)

// Cred is a user, secret and id made by Seed.
type Cred struct{ User, Secret, ID string }

// Seed creates users×perUser app passwords with a last use each and n audit
// records, and flushes.
func Seed(t testing.TB, s store.Store, users, perUser, audit int) []Cred {
	t.Helper()
	var creds []Cred
	for u := range users {
		for i := range perUser {
			user := fmt.Sprintf("user%d", u)
			p, secret, err := s.Create(context.Background(), store.CreateRequest{User: user, Name: fmt.Sprintf("dev%d", i),
				Scope: []string{"imap"}, Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
			if err != nil {
				t.Fatal(err)
			}
			s.RecordUse(p.ID, store.LastUse{Time: time.Date(2025, 1, 1, 0, u, i, 0, time.UTC), Protocol: "imap"})
			creds = append(creds, Cred{user, secret, p.ID})
		}
	}
	FillAudit(t, s, audit, time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	return creds
}

// CheckCopy fails t unless every cred verifies on s with a last use, and s
// has want audit records in an intact chain.
func CheckCopy(t testing.TB, s store.Store, creds []Cred, wantAudit int) {
	t.Helper()
	ctx := context.Background()
	for _, c := range creds {
		p, err := s.Verify(ctx, c.User, c.Secret)
		if err != nil || p.ID != c.ID {
			t.Fatalf("Verify(%s) after copy: got %q, %v; want %s", c.User, p.ID, err, c.ID)
		}
		if p.LastUse.Time.IsZero() || fmt.Sprint(p.Networks) != "[192.0.2.0/24]" {
			t.Errorf("%s after copy: got last use %v networks %v, want both kept", c.ID, p.LastUse, p.Networks)
		}
	}
	res, err := s.VerifyAudit(ctx)
	if err != nil || !res.OK || res.Records != uint64(wantAudit) {
		t.Errorf("VerifyAudit after copy: got %+v, %v; want OK with %d", res, err, wantAudit)
	}
}

func testExportImport(t *testing.T, h Harness) {
	ctx := context.Background()
	a, b := h.open(t), h.open(t)
	creds := Seed(t, a, 3, 4, 150)
	st, err := store.Copy(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.CopyStats{Passwords: 12, PasswordsWritten: 12, Audit: 150, AuditWritten: 150}); st != want {
		t.Errorf("first copy: got %+v, want %+v", st, want)
	}
	CheckCopy(t, b, creds, 150)
	h.check(t, b)
	// Idempotent: again writes nothing; after more source records, only those.
	FillAudit(t, a, 5, time.Now())
	st, err = store.Copy(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.CopyStats{Passwords: 12, Audit: 155, AuditWritten: 5}); st != want {
		t.Errorf("second copy: got %+v, want %+v", st, want)
	}
	if users, _ := b.Users(ctx); fmt.Sprint(users) != "[user0 user1 user2]" {
		t.Errorf("Users after copy: got %v", users)
	}
	// Limits still hold on the copy: 4 + 36 more, then ErrLimit.
	for i := range store.DefaultLimit - 4 {
		mustCreate(t, b, "user0", fmt.Sprintf("more%d", i))
	}
	if _, _, err := b.Create(ctx, store.CreateRequest{User: "user0", Name: "x"}); !errors.Is(err, store.ErrLimit) {
		t.Errorf("Create past the limit after copy: got %v, want ErrLimit", err)
	}
	// A diverged target is refused.
	b.Audit(store.AuditRecord{Action: "login", User: "x", Outcome: "allow"})
	FillAudit(t, a, 1, time.Now())
	if _, err := store.Copy(ctx, a, b); !errors.Is(err, store.ErrAuditDiverges) {
		t.Errorf("copy onto a diverged log: got %v, want ErrAuditDiverges", err)
	}
}
