package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// A caller mutating what Verify returned must not change the replica.
func TestVerifyReturnsCopy(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, "")
	net := netip.MustParsePrefix("192.0.2.0/24")
	p, secret, err := b.Create(ctx, CreateRequest{User: "alice", Name: "Laptop", Scope: []string{"imap"}, Networks: []netip.Prefix{net}})
	if err != nil {
		t.Fatal(err)
	}
	// Neither may Create's result or request alias the replica.
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
	if !hmac.Equal(again.Hash, p.Hash) {
		t.Errorf("after mutating a returned copy: hash changed")
	}
}

// Hit and miss must do the same work; allocations are the part a test can
// count deterministically. A hit allocates only the returned hash copy.
func TestVerifyAllocsHitMiss(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	ctx := context.Background()
	b := openTest(t, "")
	_, secret := mustCreate(t, b, "alice", "Laptop")
	hit := testing.AllocsPerRun(200, func() {
		if _, err := b.Verify(ctx, "alice", secret); err != nil {
			t.Fatal(err)
		}
	})
	miss := testing.AllocsPerRun(200, func() {
		if _, err := b.Verify(ctx, "alice", "AAAA-BBBB-CCCC-DDDD"); err == nil {
			t.Fatal("wrong secret verified")
		}
	})
	wrongOwner := testing.AllocsPerRun(200, func() {
		if _, err := b.Verify(ctx, "bob", secret); err == nil {
			t.Fatal("other user's secret verified")
		}
	})
	if hit > 1 || miss != hit || wrongOwner != hit {
		t.Errorf("allocs per Verify: got hit %v, miss %v, wrong owner %v; want all equal and at most 1", hit, miss, wrongOwner)
	}
}

func TestHasherMatchesHMAC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h := newHasher(key)
	for _, secret := range []string{"", "ABCD-EFGH-JKMN-PQRS", "abcdefghjkmnpqrs", " a b\tc-D ", strings.Repeat("X-", 1000), "short"} {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(Normalize(secret)))
		want := m.Sum(nil)
		for range 2 { // the second call reuses a pooled instance
			got := h.sum(secret)
			if !hmac.Equal(got[:], want) {
				t.Errorf("sum(%.20q): got %x, want %x", secret, got, want)
			}
		}
	}
}

func TestCtEqualString(t *testing.T) {
	for _, tc := range []struct {
		in, ref string
		want    bool
	}{
		{"alice", "alice", true},
		{"", "", true},
		{"alice", "", false},
		{"", "alice", false},
		{"alice", "alicf", false},
		{"alice", "alice2", false},
		{"alice2", "alice", false},
		{"alice\x00", "alice", false},
	} {
		if got := ctEqualString(tc.in, tc.ref); got != tc.want {
			t.Errorf("ctEqualString(%q, %q): got %v, want %v", tc.in, tc.ref, got, tc.want)
		}
	}
}
