package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"hash"
	"sync"
)

// macState is one pooled HMAC instance with its scratch buffers. hmac.New
// allocates; Reset on a used instance does not.
type macState struct {
	mac hash.Hash
	in  []byte
	out [sha256.Size]byte
}

// maxPooledInput bounds the normalisation buffer a pooled macState keeps, so
// one absurdly long password does not pin memory.
const maxPooledInput = 256

// hasher computes HMAC-SHA-256(key, Normalize(secret)) without allocating.
type hasher struct{ pool sync.Pool }

func newHasher(key []byte) *hasher {
	key = append([]byte(nil), key...)
	h := &hasher{}
	h.pool.New = func() any {
		return &macState{mac: hmac.New(sha256.New, key), in: make([]byte, 0, 64)}
	}
	return h
}

func (h *hasher) sum(secret string) [sha256.Size]byte {
	st := h.pool.Get().(*macState)
	st.in = appendNormalized(st.in[:0], secret)
	st.mac.Reset()
	st.mac.Write(st.in)
	out := [sha256.Size]byte(st.mac.Sum(st.out[:0]))
	if cap(st.in) > maxPooledInput {
		st.in = make([]byte, 0, 64)
	}
	h.pool.Put(st)
	return out
}

// hashSecret is the keyed hash stored for a secret.
func (b *Bolt) hashSecret(secret string) []byte {
	h := b.hash.sum(secret)
	return h[:]
}

// newDummy is the record a Verify miss is checked against, so that a miss
// does the same work as a hit: a random hash nobody's secret has, and no user.
func newDummy() *AppPassword {
	p := &AppPassword{HashAlg: HashHMACSHA256, Hash: make([]byte, sha256.Size)}
	if _, err := rand.Read(p.Hash); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return p
}

// Verify finds the app password of user whose secret this is. It returns
// ErrNotFound for an unknown secret or another user's secret; the caller
// decides about expiry, scope and networks.
//
// It touches no disk: one HMAC (pooled, no allocation), one lookup in the
// in-memory replica, a constant-time hash comparison, an owner comparison
// whose time depends only on the length of user, and the merge of a pending
// last use. A miss is checked against a dummy record with the same steps, so
// hit and miss cost about the same. The returned record is a copy; its
// slices belong to the caller.
func (b *Bolt) Verify(ctx context.Context, user, secret string) (AppPassword, error) {
	release, err := b.begin(ctx)
	if err != nil {
		return AppPassword{}, err
	}
	defer release()
	user = NormalizeUser(user)
	h := b.hash.sum(secret)
	rec := b.rep.get(h)
	found := rec != nil
	if !found {
		rec = b.dummy
	}
	// Every check always runs; the result does not depend on which failed.
	hashOK := hmac.Equal(h[:], rec.Hash)
	algOK := rec.HashAlg == HashHMACSHA256
	ownerOK := ctEqualString(user, rec.User)
	p := rec.clone()
	p.LastUse = b.mergeUse(p.ID, p.LastUse)
	if !(found && hashOK && algOK && ownerOK) {
		return AppPassword{}, ErrNotFound
	}
	return p, nil
}

// ctEqualString reports whether in == ref in time that depends only on
// len(in): the caller's input, not the stored value.
func ctEqualString(in, ref string) bool {
	var v byte
	if len(in) != len(ref) {
		v = 1
	}
	for i := 0; i < len(in); i++ {
		var c byte
		if i < len(ref) {
			c = ref[i]
		}
		v |= in[i] ^ c
	}
	return v == 0
}

// appendNormalized appends Normalize(s) to dst.
func appendNormalized(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == ' ' || c == '\t':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
