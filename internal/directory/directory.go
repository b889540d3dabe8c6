// Package directory answers who a user is: addresses, groups, whether they are
// an administrator or disabled, when their primary password last changed, and
// whether a primary password is right (docs/contract.md §2).
//
// Two implementations: Static (users listed in the YAML) and LDAP (the upstream
// directory, in ldap.go). Cached wraps either with a TTL.
package directory

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var (
	// ErrNoSuchUser: the directory does not know the login name.
	ErrNoSuchUser = errors.New("directory: no such user")
	// ErrBadPassword: the primary password is wrong (or the user has none).
	ErrBadPassword = errors.New("directory: wrong password")
	// ErrUnavailable: the directory could not be asked; logins must answer
	// "unavailable", never "allowed".
	ErrUnavailable = errors.New("directory: unavailable")
)

// User is a directory entry as Legate needs it.
type User struct {
	// Name is the canonical login name (lower case).
	Name            string
	DN              string // LDAP distinguished name, if any
	Addresses       []string
	Groups          []string
	Admin           bool
	Disabled        bool
	PasswordChanged time.Time // zero: unknown
}

// Directory looks users up and checks primary passwords.
type Directory interface {
	// Lookup finds the one user a login name means (docs/identity.md):
	//   - the user's canonical name (case-insensitive), or
	//   - one of the user's addresses (it contains '@'), when it belongs to
	//     exactly one user and is nobody else's canonical name, or
	//   - for the LDAP directory only, the user's own DN (an LDAP bind name),
	//     when it is the entry the canonical name resolves to.
	// Anything else — another DN shape, a login matching several users, a
	// login that is not a valid login name — is ErrNoSuchUser. The User's
	// Name is the canonical name every caller uses from then on.
	Lookup(ctx context.Context, login string) (*User, error)
	// CheckPassword verifies the user's primary password.
	CheckPassword(ctx context.Context, u *User, password string) error
}

// MaxLoginLength bounds a login name, in bytes.
const MaxLoginLength = 256

// ValidLogin reports whether s (already trimmed) can be a login name at all:
// 1 to MaxLoginLength bytes of UTF-8 without control characters.
func ValidLogin(s string) bool {
	if s == "" || len(s) > MaxLoginLength || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// DNShaped reports whether s looks like a distinguished name (it contains
// '=' or ','): never a canonical name or an address.
func DNShaped(s string) bool { return strings.ContainsAny(s, "=,") }

// normalize is the case-insensitive form names and addresses are compared in.
func normalize(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
