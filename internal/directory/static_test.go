package directory

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func bcryptHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newStatic(t *testing.T, users []StaticUser) *Static {
	t.Helper()
	s, err := NewStatic(users)
	if err != nil {
		t.Fatalf("NewStatic: %v", err)
	}
	return s
}

func TestStaticLookup(t *testing.T) {
	s := newStatic(t, []StaticUser{
		{Name: "Alice", Addresses: []string{"Alice@Example.com", "a.smith@example.com"}, Groups: []string{"staff"}},
		{Name: " bob ", Addresses: []string{"bob@example.com"}, Admin: true},
		{Name: "carol", Disabled: true},
	})
	tests := []struct {
		login    string
		wantName string // "" means ErrNoSuchUser
	}{
		{"alice", "alice"},
		{"ALICE", "alice"},
		{"  Alice ", "alice"},
		{"alice@example.com", "alice"},
		{"ALICE@EXAMPLE.COM", "alice"},
		{"a.smith@example.com", "alice"},
		// DN shapes are never login names (issue #13.5): any uid=/cn=
		// prefix used to reduce to the user.
		{"uid=alice,ou=people,dc=example,dc=com", ""},
		{"UID=Alice,ou=people,dc=example,dc=com", ""},
		{"cn=bob,ou=people,dc=example,dc=com", ""},
		{"cn=bob,o=evil", ""},
		{"sAMAccountName=bob,dc=example", ""},
		{"alice,", ""},
		{"alice\x00", ""},
		{"bob", "bob"},
		{"carol", "carol"},
		{"mail=alice,dc=example", ""},
		{"ou=alice", ""},
		{"dave", ""},
		{"", ""},
		{"dave@example.com", ""},
	}
	for _, tt := range tests {
		u, err := s.Lookup(context.Background(), tt.login)
		if tt.wantName == "" {
			if !errors.Is(err, ErrNoSuchUser) {
				t.Errorf("Lookup(%q): got %v, %v; want ErrNoSuchUser", tt.login, u, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Lookup(%q): got error %v, want user %s", tt.login, err, tt.wantName)
			continue
		}
		if u.Name != tt.wantName {
			t.Errorf("Lookup(%q): got user %q, want %q", tt.login, u.Name, tt.wantName)
		}
	}
}

func TestStaticUserFields(t *testing.T) {
	s := newStatic(t, []StaticUser{
		{Name: "alice", Addresses: []string{"alice@example.com"}, Groups: []string{"staff", "vpn"}, Admin: true, Disabled: true},
	})
	u, err := s.Lookup(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := &User{Name: "alice", Addresses: []string{"alice@example.com"}, Groups: []string{"staff", "vpn"}, Admin: true, Disabled: true}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("got %+v, want %+v", u, want)
	}
	// Changing the returned struct's own fields does not change the directory.
	u.Admin = false
	u.Name = "mallory"
	again, _ := s.Lookup(context.Background(), "alice")
	if !again.Admin || again.Name != "alice" {
		t.Errorf("directory changed through a returned user: got %+v", again)
	}
}

func TestNewStaticErrors(t *testing.T) {
	tests := []struct {
		name    string
		users   []StaticUser
		wantErr string
	}{
		{"duplicate name", []StaticUser{{Name: "alice"}, {Name: "alice"}}, "listed twice"},
		{"duplicate name differing in case", []StaticUser{{Name: "alice"}, {Name: " ALICE"}}, "listed twice"},
		{"no name", []StaticUser{{Name: "  "}}, "without a name"},
		{"unknown hash scheme", []StaticUser{{Name: "alice", PasswordHash: "{SSHA}abcdef"}}, "argon2id"},
		{"plain text password", []StaticUser{{Name: "alice", PasswordHash: "hunter2"}}, "alice"},
		{"truncated bcrypt", []StaticUser{{Name: "alice", PasswordHash: "$2b$10$abc"}}, "bcrypt"},
		{"argon2i not argon2id", []StaticUser{{Name: "alice", PasswordHash: "$argon2i$v=19$m=65536,t=3,p=2$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"}}, "argon2id"},
		{"argon2id wrong version", []StaticUser{{Name: "alice", PasswordHash: "$argon2id$v=16$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"}}, "version"},
		{"argon2id missing part", []StaticUser{{Name: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHQ"}}, "argon2id"},
		{"argon2id huge memory", []StaticUser{{Name: "alice", PasswordHash: "$argon2id$v=19$m=99999999,t=3,p=2$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"}}, "out of range"},
		{"argon2id zero time", []StaticUser{{Name: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=0,p=2$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"}}, "out of range"},
		{"argon2id bad salt", []StaticUser{{Name: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$!!!$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"}}, "salt"},
		{"argon2id short key", []StaticUser{{Name: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$a2V5"}}, "key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStatic(tt.users)
			if err == nil {
				t.Fatalf("got directory %v, want an error containing %q", s, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantErr)
			}
			for _, u := range tt.users {
				if u.PasswordHash != "" && len(u.PasswordHash) > 12 && strings.Contains(err.Error(), u.PasswordHash) {
					t.Errorf("error %q repeats the password hash", err)
				}
			}
		})
	}
}

// TestStaticAddressCollision: an address equal to another user's name must
// not take that name over, and an address of several users logs in none of
// them (it used to go to the first listed: issue #13.5).
func TestStaticAddressCollision(t *testing.T) {
	s := newStatic(t, []StaticUser{
		{Name: "alice"},
		{Name: "mallory", Addresses: []string{"alice", "shared@example.com"}},
		{Name: "bob", Addresses: []string{"shared@example.com"}},
	})
	tests := []struct{ login, want string }{
		{"alice", "alice"},
		{"shared@example.com", ""},
	}
	for _, tt := range tests {
		u, err := s.Lookup(context.Background(), tt.login)
		if tt.want == "" {
			if !errors.Is(err, ErrNoSuchUser) {
				t.Errorf("Lookup(%q): got %v, %v; want ErrNoSuchUser", tt.login, u, err)
			}
			continue
		}
		if err != nil || u.Name != tt.want {
			t.Errorf("Lookup(%q): got %v, %v; want %s", tt.login, u, err, tt.want)
		}
	}
}

func TestStaticCheckPassword(t *testing.T) {
	argon := HashArgon2id("correct horse")
	if !strings.HasPrefix(argon, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("HashArgon2id: got %q, want a $argon2id$v=19$m=65536,t=3,p=2$ PHC string", argon)
	}
	if again := HashArgon2id("correct horse"); again == argon {
		t.Errorf("HashArgon2id twice gave the same hash: the salt is not random")
	}
	s := newStatic(t, []StaticUser{
		{Name: "alice", PasswordHash: argon},
		{Name: "bob", PasswordHash: bcryptHash(t, "battery staple")},
		{Name: "carol"},
	})
	tests := []struct {
		user, password string
		wantOK         bool
	}{
		{"alice", "correct horse", true},
		{"alice", "correct horse ", false},
		{"alice", "Correct horse", false},
		{"alice", "", false},
		{"alice", "battery staple", false},
		{"bob", "battery staple", true},
		{"bob", "battery stapl", false},
		{"bob", "", false},
		{"carol", "", false}, // no primary password at all
		{"carol", "anything", false},
	}
	for _, tt := range tests {
		u, err := s.Lookup(context.Background(), tt.user)
		if err != nil {
			t.Fatal(err)
		}
		err = s.CheckPassword(context.Background(), u, tt.password)
		switch {
		case tt.wantOK && err != nil:
			t.Errorf("CheckPassword(%s, %q): got %v, want nil", tt.user, tt.password, err)
		case !tt.wantOK && !errors.Is(err, ErrBadPassword):
			t.Errorf("CheckPassword(%s, %q): got %v, want ErrBadPassword", tt.user, tt.password, err)
		}
	}
	// A user the directory does not hold (e.g. from an older snapshot).
	if err := s.CheckPassword(context.Background(), &User{Name: "zed"}, "x"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("CheckPassword of unknown user: got %v, want ErrBadPassword", err)
	}
}

func TestVerifyHash(t *testing.T) {
	bc := bcryptHash(t, "pw")
	tests := []struct {
		name, hash, pw string
		want           bool
	}{
		{"bcrypt ok", bc, "pw", true},
		{"bcrypt wrong", bc, "pW", false},
		{"$2b$ prefix", strings.Replace(bc, "$2a$", "$2b$", 1), "pw", true},
		{"$2y$ prefix", strings.Replace(bc, "$2a$", "$2y$", 1), "pw", true},
		{"garbage", "not a hash", "pw", false},
		{"empty hash", "", "", false},
		{"broken argon2id", "$argon2id$v=19$garbage", "pw", false},
	}
	for _, tt := range tests {
		if got := VerifyHash(tt.hash, tt.pw); got != tt.want {
			t.Errorf("%s: VerifyHash: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestStaticLookupUnicodeCase: matching ignores case for non-ASCII names too.
func TestStaticLookupUnicodeCase(t *testing.T) {
	s := newStatic(t, []StaticUser{{Name: "Ärger", Addresses: []string{"ÄRGER@example.com"}}})
	for _, login := range []string{"ärger", "ÄRGER", "ärger@EXAMPLE.com"} {
		if u, err := s.Lookup(context.Background(), login); err != nil || u.Name != "ärger" {
			t.Errorf("Lookup(%q): got %v, %v; want ärger", login, u, err)
		}
	}
}

// TestStaticLoginRule: a login is a canonical name, or an address of exactly
// one user that is nobody's name (docs/identity.md).
func TestStaticLoginRule(t *testing.T) {
	s := newStatic(t, []StaticUser{
		{Name: "alice", Addresses: []string{"alice@example.com", "team@example.com"}},
		{Name: "bob", Addresses: []string{"bob@example.com", "team@example.com", "carol@example.com"}},
		{Name: "carol@example.com"},
	})
	tests := []struct{ login, want string }{
		{"team@example.com", ""},                   // shared: logs in nobody
		{"TEAM@example.com", ""},                   // case does not help
		{"carol@example.com", "carol@example.com"}, // a canonical name wins over bob's alias
		{"bob@example.com", "bob"},
		{"alice@example.com", "alice"},
	}
	for _, tt := range tests {
		u, err := s.Lookup(context.Background(), tt.login)
		got := ""
		if err == nil {
			got = u.Name
		} else if !errors.Is(err, ErrNoSuchUser) {
			t.Fatalf("Lookup(%q): %v", tt.login, err)
		}
		if got != tt.want {
			t.Errorf("Lookup(%q) = %q, want %q", tt.login, got, tt.want)
		}
	}
	for _, bad := range []string{"uid=alice", "alice,ou=x", "a\x07b", ""} {
		if _, err := NewStatic([]StaticUser{{Name: bad}}); err == nil {
			t.Errorf("NewStatic(name %q) = nil error, want refusal", bad)
		}
	}
}
