package directory

import (
	"context"
	"crypto/subtle"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// StaticUser is one user as listed under directory.static.users.
type StaticUser struct {
	Name         string
	Addresses    []string
	Groups       []string
	Admin        bool
	Disabled     bool
	PasswordHash string // argon2id PHC string or bcrypt; empty: no primary password
}

// Static is a directory held in memory, from the configuration file.
type Static struct {
	byName    map[string]*staticEntry
	byAddress map[string]*staticEntry // nil value: the address of several users
}

type staticEntry struct {
	user User
	hash string
}

var _ Directory = (*Static)(nil)

// NewStatic builds a static directory. Names and addresses are matched
// case-insensitively; a password hash that cannot be parsed is an error, and
// so is a name that is not a valid login name or is shaped like a DN (names
// are canonical: docs/identity.md).
func NewStatic(users []StaticUser) (*Static, error) {
	s := &Static{byName: make(map[string]*staticEntry), byAddress: make(map[string]*staticEntry)}
	for _, su := range users {
		name := normalize(su.Name)
		if name == "" {
			return nil, fmt.Errorf("directory: static user without a name")
		}
		if !ValidLogin(name) || DNShaped(name) {
			return nil, fmt.Errorf("directory: static user %q: a name must be a plain login name (no '=', ',' or control characters)", su.Name)
		}
		if su.PasswordHash != "" {
			if err := checkHashFormat(su.PasswordHash); err != nil {
				return nil, fmt.Errorf("directory: user %s: %w", name, err)
			}
		}
		e := &staticEntry{
			user: User{
				Name:      name,
				Addresses: append([]string(nil), su.Addresses...),
				Groups:    append([]string(nil), su.Groups...),
				Admin:     su.Admin,
				Disabled:  su.Disabled,
			},
			hash: su.PasswordHash,
		}
		if _, dup := s.byName[name]; dup {
			return nil, fmt.Errorf("directory: static user %s listed twice", name)
		}
		s.byName[name] = e
		for _, a := range su.Addresses {
			a = normalize(a)
			if !strings.Contains(a, "@") || !ValidLogin(a) || DNShaped(a) {
				continue // never a login name
			}
			if prev, seen := s.byAddress[a]; seen && prev != e {
				s.byAddress[a] = nil // shared by several users: logs in nobody
			} else {
				s.byAddress[a] = e
			}
		}
	}
	return s, nil
}

// Lookup implements Directory: a canonical name, or else an address of
// exactly one user. DN shapes are never login names here.
func (s *Static) Lookup(_ context.Context, login string) (*User, error) {
	key := normalize(login)
	if !ValidLogin(key) || DNShaped(key) {
		return nil, ErrNoSuchUser
	}
	e, ok := s.byName[key]
	if !ok && strings.Contains(key, "@") {
		e = s.byAddress[key] // nil when shared
	}
	if e == nil {
		return nil, ErrNoSuchUser
	}
	u := e.user
	return &u, nil
}

// CheckPassword implements Directory.
func (s *Static) CheckPassword(_ context.Context, u *User, password string) error {
	e, ok := s.byName[u.Name]
	if !ok || e.hash == "" {
		// Same cost as a real check would be too slow to matter for
		// enumeration here: trusted-network primary logins only.
		return ErrBadPassword
	}
	if !VerifyHash(e.hash, password) {
		return ErrBadPassword
	}
	return nil
}

func checkHashFormat(h string) error {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		_, _, _, err := parseArgon2id(h)
		return err
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return fmt.Errorf("bad bcrypt hash: %w", err)
		}
		return nil
	}
	return fmt.Errorf("password_hash must be argon2id ($argon2id$...) or bcrypt ($2b$...)")
}

// VerifyHash checks password against an argon2id PHC string or a bcrypt hash.
func VerifyHash(hash, password string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		p, salt, key, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		got := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, uint32(len(key)))
		return subtle.ConstantTimeCompare(got, key) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}
