package auth

import (
	"context"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/session"
)

// BenchmarkSweep10k measures one sweep of the session registry (issue 17):
// 10,000 live sessions, one per user, re-decided by Service.Recheck against
// the bbolt fixture (10,000 users × 5 app passwords) and a static directory
// of 10,000 users; nothing is refused, so it is the cost of the check
// alone. One op = one whole sweep.
//
//	go test -run x -bench Sweep10k -benchmem ./internal/auth/
func BenchmarkSweep10k(b *testing.B) {
	st, creds := benchFixture(b)
	svc := New(Options{Store: st, Directory: benchDirectory(b), Policy: testPolicy(), Logger: discard()})
	reg := session.New()
	reg.SetHooks(session.Hooks{Recheck: svc.Recheck})
	ctx := context.Background()
	for u := range benchUsers {
		c := creds[u*benchPerUser]
		ap, err := st.Verify(ctx, c.User, c.Secret)
		if err != nil {
			b.Fatal(err)
		}
		id, _ := reg.Register(session.Info{User: c.User, AppPasswordID: ap.ID, Protocol: "imap",
			IP: benchIP(u), TLS: true, Started: time.Now()}, func() { b.Error("a session was closed") })
		reg.Confirm(ctx, id)
	}
	if n := reg.Count(""); n != benchUsers {
		b.Fatalf("%d live sessions, want %d", n, benchUsers)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if n := reg.Sweep(ctx); n != 0 {
			b.Fatalf("sweep closed %d sessions", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchUsers, "ns/session")
}
