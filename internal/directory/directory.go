// Package directory answers who a user is: addresses, groups, whether they are
// an administrator or disabled, when their primary password last changed, and
// whether a primary password is right (SPEC §2).
//
// Two implementations: Static (users listed in the YAML) and LDAP (the upstream
// directory, in ldap.go). Cached wraps either with a TTL.
package directory

import (
	"context"
	"errors"
	"time"
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
	// Lookup finds a user by login name, e-mail address or DN.
	Lookup(ctx context.Context, login string) (*User, error)
	// CheckPassword verifies the user's primary password.
	CheckPassword(ctx context.Context, u *User, password string) error
}
