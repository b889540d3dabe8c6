package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
)

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
