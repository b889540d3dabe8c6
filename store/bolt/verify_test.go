package bolt

import (
	"context"
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
