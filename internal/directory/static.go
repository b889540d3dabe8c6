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
	byLogin map[string]*staticEntry
}

type staticEntry struct {
	user User
	hash string
}

var _ Directory = (*Static)(nil)

// NewStatic builds a static directory. Names and addresses are matched
// case-insensitively; a password hash that cannot be parsed is an error.
func NewStatic(users []StaticUser) (*Static, error) {
	s := &Static{byLogin: make(map[string]*staticEntry)}
	for _, su := range users {
		name := strings.ToLower(strings.TrimSpace(su.Name))
		if name == "" {
			return nil, fmt.Errorf("directory: static user without a name")
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
		if _, dup := s.byLogin[name]; dup {
			return nil, fmt.Errorf("directory: static user %s listed twice", name)
		}
		s.byLogin[name] = e
		for _, a := range su.Addresses {
			a = strings.ToLower(strings.TrimSpace(a))
			if _, dup := s.byLogin[a]; !dup && a != "" {
				s.byLogin[a] = e
			}
		}
	}
	return s, nil
}

// Lookup implements Directory. A DN of the form uid=NAME,... or cn=NAME,...
// is reduced to NAME.
func (s *Static) Lookup(_ context.Context, login string) (*User, error) {
	key := strings.ToLower(strings.TrimSpace(login))
	if e, ok := s.byLogin[key]; ok {
		u := e.user
		return &u, nil
	}
	if name, ok := rdnValue(key); ok {
		if e, ok := s.byLogin[name]; ok {
			u := e.user
			return &u, nil
		}
	}
	return nil, ErrNoSuchUser
}

// CheckPassword implements Directory.
func (s *Static) CheckPassword(_ context.Context, u *User, password string) error {
	e, ok := s.byLogin[u.Name]
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

// rdnValue returns the value of the first RDN of a DN when its attribute is
// uid or cn.
func rdnValue(dn string) (string, bool) {
	first, _, _ := strings.Cut(dn, ",")
	attr, val, ok := strings.Cut(first, "=")
	if !ok {
		return "", false
	}
	switch strings.TrimSpace(attr) {
	case "uid", "cn", "samaccountname":
		return strings.TrimSpace(val), true
	}
	return "", false
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
