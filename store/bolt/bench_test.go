package bolt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/legate-proxy/legate/store"
)

// BenchmarkVerify measures the login-path lookup against 10,000 users × 5
// app passwords (built once with BulkLoad; the sub-benchmarks share it).
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, "")
	creds, err := s.BulkLoad(10_000, 5)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			c := creds[i%len(creds)]
			i += 7919 // spread over the keyspace
			if _, err := s.Verify(ctx, c.User, c.Secret); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Verify(ctx, "user00001", "AAAA-BBBB-CCCC-DDDD"); err == nil {
				b.Fatal("verified a wrong secret")
			}
		}
	})
	// miss-spread is the fair comparison with hit: wrong secrets for users
	// spread over the keyspace, so neither stays in the CPU cache ("miss"
	// repeats one secret).
	wrong := make([]Cred, 4096)
	for i := range wrong {
		wrong[i] = Cred{User: creds[(i*7919)%len(creds)].User, Secret: store.Generate()}
	}
	b.Run("miss-spread", func(b *testing.B) {
		i := 0
		for b.Loop() {
			c := wrong[i%len(wrong)]
			i++
			if _, err := s.Verify(ctx, c.User, c.Secret); err == nil {
				b.Fatal("verified a wrong secret")
			}
		}
	})
	b.Run("hit+RecordUse+Audit", func(b *testing.B) {
		before := s.WriteTxs()
		i := 0
		for b.Loop() {
			c := creds[i%len(creds)]
			i += 7919
			p, err := s.Verify(ctx, c.User, c.Secret)
			if err != nil {
				b.Fatal(err)
			}
			s.RecordUse(p.ID, store.LastUse{Time: time.Now(), Protocol: "imap"})
			s.Audit(store.AuditRecord{Action: "login", User: c.User, Outcome: "allow", AppPasswordID: p.ID})
		}
		b.ReportMetric(float64(s.WriteTxs()-before)/float64(b.N), "writetx/op")
		b.StopTimer()
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := int(time.Now().UnixNano())
			for pb.Next() {
				c := creds[(i&0x7fffffff)%len(creds)]
				i += 7919
				if _, err := s.Verify(ctx, c.User, c.Secret); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkBcrypt10 is what a slow KDF would cost per login, for comparison.
func BenchmarkBcrypt10(b *testing.B) {
	hash, err := bcrypt.GenerateFromPassword([]byte("abcdefghjkmnpqrs"), 10)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := bcrypt.CompareHashAndPassword(hash, []byte("abcdefghjkmnpqrs")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreate is one fsynced transaction per app password.
func BenchmarkCreate(b *testing.B) {
	s := openTest(b, "")
	i := 0
	for b.Loop() {
		i++
		req := store.CreateRequest{User: fmt.Sprintf("bench%d", i%1000), Name: fmt.Sprintf("dev%d", i), Limit: 1 << 30}
		if _, _, err := s.Create(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
