package store

import (
	"crypto/rand"
	"strings"
)

// Alphabet is the app-password alphabet: lower-case letters and digits without
// look-alikes (no 0/o, 1/l/i). 31 symbols, 16 characters: about 79 bits.
const Alphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// SecretLen is the number of significant characters in an app password.
const SecretLen = 16

// Generate returns a new secret in display form, XXXX-XXXX-XXXX-XXXX.
func Generate() string {
	var b strings.Builder
	b.Grow(SecretLen + 3)
	var buf [1]byte
	n := 0
	for n < SecretLen {
		if _, err := rand.Read(buf[:]); err != nil {
			panic("store: crypto/rand failed: " + err.Error())
		}
		// Rejection sampling: 248 = 8*31, keeps the distribution uniform.
		if buf[0] >= 248 {
			continue
		}
		if n > 0 && n%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(Alphabet[int(buf[0])%len(Alphabet)])
		n++
	}
	return strings.ToUpper(b.String())
}

// Normalize canonicalises a secret as typed by a user: case, dashes and
// spaces are ignored. The result is what gets hashed.
func Normalize(s string) string {
	return string(appendNormalized(make([]byte, 0, SecretLen), s))
}

func toLowerTrim(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
