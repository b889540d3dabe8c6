package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TEMPORARY: the pre-replica Verify, for a same-load comparison.
func (b *Bolt) verifyOld(ctx context.Context, user, secret string) (AppPassword, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return AppPassword{}, err
	}
	defer release()
	user = NormalizeUser(user)
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte(Normalize(secret)))
	h := m.Sum(nil)
	dummyHash := make([]byte, 32)
	var p AppPassword
	found := false
	err = b.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketIndex).Get(h)
		if id == nil {
			hmac.Equal(h, dummyHash)
			return nil
		}
		var ok bool
		var err error
		p, ok, err = getPassword(tx, string(id))
		if err != nil || !ok {
			hmac.Equal(h, dummyHash)
			return err
		}
		hashOK := hmac.Equal(h, p.Hash) && p.HashAlg == HashHMACSHA256
		ownerOK := p.User == user
		found = hashOK && ownerOK
		return nil
	})
	if err != nil {
		return AppPassword{}, err
	}
	if !found {
		return AppPassword{}, ErrNotFound
	}
	p.LastUse = b.mergeUse(p.ID, p.LastUse)
	return p, nil
}

func BenchmarkVerifyOld(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, "")
	creds, err := s.BulkLoad(10_000, 5)
	if err != nil {
		b.Fatal(err)
	}
	wrong := make([]Cred, 4096)
	for i := range wrong {
		wrong[i] = Cred{User: creds[(i*7919)%len(creds)].User, Secret: Generate()}
	}
	for _, impl := range []struct {
		name string
		fn   func(context.Context, string, string) (AppPassword, error)
	}{{"old", s.verifyOld}, {"new", s.Verify}} {
		b.Run(impl.name+"/hit", func(b *testing.B) {
			i := 0
			for b.Loop() {
				c := creds[i%len(creds)]
				i += 7919
				if _, err := impl.fn(ctx, c.User, c.Secret); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(impl.name+"/miss", func(b *testing.B) {
			for b.Loop() {
				if _, err := impl.fn(ctx, "user00001", "AAAA-BBBB-CCCC-DDDD"); err == nil {
					b.Fatal("verified")
				}
			}
		})
		b.Run(impl.name+"/miss-spread", func(b *testing.B) {
			i := 0
			for b.Loop() {
				c := wrong[i%len(wrong)]
				i++
				if _, err := impl.fn(ctx, c.User, c.Secret); err == nil {
					b.Fatal("verified")
				}
			}
		})
	}
}
