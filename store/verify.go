package store

import (
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

// Secrets hashes and matches secrets under one HMAC key. Both backends
// use it for Create (Hash) and Verify (Match).
type Secrets struct {
	hash  *hasher
	dummy *AppPassword
	keyID string
}

// NewSecrets returns a Secrets for key.
func NewSecrets(key []byte) *Secrets {
	return &Secrets{hash: newHasher(key), dummy: newDummy(), keyID: keyID(key)}
}

// Hash is the keyed hash stored for a secret.
func (s *Secrets) Hash(secret string) []byte {
	h := s.hash.sum(secret)
	return h[:]
}

// Sum is Hash without allocating.
func (s *Secrets) Sum(secret string) [sha256.Size]byte { return s.hash.sum(secret) }

// KeyID identifies the key (not secret: a keyed hash of a constant).
func (s *Secrets) KeyID() string { return s.keyID }

// newDummy is the record a Verify miss is checked against, so that a miss
// does the same work as a hit: a random hash nobody's secret has, and no user.
func newDummy() *AppPassword {
	p := &AppPassword{HashAlg: HashHMACSHA256, Hash: make([]byte, sha256.Size)}
	if _, err := rand.Read(p.Hash); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return p
}

// Match finds the app password of user whose secret this is in r. It
// returns ok false for an unknown secret or another user's secret; the
// caller decides about expiry, scope and networks.
//
// It touches no disk: one HMAC (pooled, no allocation), one lookup in the
// in-memory replica, a constant-time hash comparison and an owner
// comparison whose time depends only on the length of user. A miss is
// checked against a dummy record with the same steps, so hit and miss cost
// about the same. The returned record is a copy (also on a miss, for the
// same cost); its slices belong to the caller.
func (s *Secrets) Match(r *Replica, user, secret string) (AppPassword, bool) {
	user = NormalizeUser(user)
	h := s.hash.sum(secret)
	rec := r.Get(h)
	found := rec != nil
	if !found {
		rec = s.dummy
	}
	// Every check always runs; the result does not depend on which failed.
	hashOK := hmac.Equal(h[:], rec.Hash)
	algOK := rec.HashAlg == HashHMACSHA256
	ownerOK := ctEqualString(user, rec.User)
	p := rec.Clone()
	if !(found && hashOK && algOK && ownerOK) {
		return p, false
	}
	return p, true
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
