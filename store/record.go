package store

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
)

// Defaults shared by the backends.
const (
	// DefaultLimit is CreateRequest.Limit's zero value.
	DefaultLimit = 40
)

// idEncoding spells IDs: 5 random bytes → 8 lower-case base32 characters.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a fresh random app-password id.
func NewID() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return idEncoding.EncodeToString(b[:])
}

// sentinelError has its own message but matches a sentinel with errors.Is.
type sentinelError struct {
	msg      string
	sentinel error
}

func (e *sentinelError) Error() string { return e.msg }
func (e *sentinelError) Unwrap() error { return e.sentinel }

// Errorf returns an error with the formatted message that matches sentinel
// with errors.Is.
func Errorf(sentinel error, format string, args ...any) error {
	return &sentinelError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}
