package directory_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
)

func newLDAPDir(t *testing.T, s *testenv.Slapd, mode string) *directory.LDAP {
	t.Helper()
	addr := s.Addr
	if mode == upstream.ModeImplicit {
		addr = s.LDAPSAddr
	}
	d, err := directory.NewLDAP(directory.LDAPOptions{
		Upstream: &upstream.Config{Address: addr, Mode: mode, TLS: s.TLS.Clone(),
			MasterUser: s.ServiceDN, MasterPassword: s.ServicePassword, DialTimeout: 3 * time.Second},
		BaseDN:      "ou=people," + s.BaseDN,
		AdminGroups: []string{"CN=Admins, ou=groups," + s.BaseDN},
		Timeout:     5 * time.Second,
	})
	if err != nil {
		t.Fatalf("NewLDAP: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestLDAPLookup(t *testing.T) {
	s := testenv.StartSlapd(t, testenv.SlapdOptions{})
	ctx := context.Background()
	for _, mode := range []string{upstream.ModeNone, upstream.ModeSTARTTLS, upstream.ModeImplicit} {
		t.Run(mode, func(t *testing.T) {
			d := newLDAPDir(t, s, mode)
			tests := []struct {
				login, name     string
				admin, disabled bool
			}{
				{"alice", "alice", false, false},
				{"ALICE", "alice", false, false},
				{"alice.liddell@example.com", "alice", false, false},
				{s.UserDN("alice"), "alice", false, false},
				{"UID=Alice,OU=People," + s.BaseDN, "alice", false, false},
				{"root", "root", true, false},
				{"carol", "carol", false, true},
			}
			for _, tc := range tests {
				u, err := d.Lookup(ctx, tc.login)
				if err != nil {
					t.Fatalf("Lookup(%q): %v", tc.login, err)
				}
				if u.Name != tc.name || u.Admin != tc.admin || u.Disabled != tc.disabled {
					t.Errorf("Lookup(%q) = name %q admin %v disabled %v, want %q %v %v",
						tc.login, u.Name, u.Admin, u.Disabled, tc.name, tc.admin, tc.disabled)
				}
			}
			u, _ := d.Lookup(ctx, "alice")
			if u.DN != s.UserDN("alice") {
				t.Errorf("DN = %q, want %q", u.DN, s.UserDN("alice"))
			}
			if want := []string{"alice@example.com", "alice.liddell@example.com"}; !slices.Equal(u.Addresses, want) {
				t.Errorf("Addresses = %v, want %v", u.Addresses, want)
			}
			if want := []string{s.GroupDN("staff")}; !slices.Equal(u.Groups, want) {
				t.Errorf("Groups = %v, want %v", u.Groups, want)
			}
			if want := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC); !u.PasswordChanged.Equal(want) {
				t.Errorf("PasswordChanged = %v, want %v", u.PasswordChanged, want)
			}
			for _, login := range []string{"nobody", "*", "alice)(uid=*", "a*", "", s.GroupDN("staff"), "uid=alice,dc=other"} {
				if _, err := d.Lookup(ctx, login); !errors.Is(err, directory.ErrNoSuchUser) {
					t.Errorf("Lookup(%q) error = %v, want ErrNoSuchUser", login, err)
				}
			}
		})
	}
}

func TestLDAPPasswordChangedAndCheck(t *testing.T) {
	s := testenv.StartSlapd(t, testenv.SlapdOptions{})
	ctx := context.Background()
	d := newLDAPDir(t, s, upstream.ModeSTARTTLS)
	u, err := d.Lookup(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckPassword(ctx, u, s.Users["bob"]); err != nil {
		t.Errorf("CheckPassword(right) = %v, want nil", err)
	}
	for _, pw := range []string{"wrong", ""} {
		if err := d.CheckPassword(ctx, u, pw); !errors.Is(err, directory.ErrBadPassword) {
			t.Errorf("CheckPassword(%q) = %v, want ErrBadPassword", pw, err)
		}
	}
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	s.SetPassword(t, "bob", "N3w-bob-password")
	u, err = d.Lookup(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if u.PasswordChanged.Before(before) {
		t.Errorf("PasswordChanged = %v, want at or after %v", u.PasswordChanged, before)
	}
	if err := d.CheckPassword(ctx, u, "N3w-bob-password"); err != nil {
		t.Errorf("CheckPassword(new) = %v, want nil", err)
	}
	s.Lock(t, "bob")
	if u, err = d.Lookup(ctx, "bob"); err != nil || !u.Disabled {
		t.Errorf("after Lock: Lookup = %+v, %v; want disabled", u, err)
	}
}

func TestLDAPUnavailable(t *testing.T) {
	s := testenv.StartSlapd(t, testenv.SlapdOptions{})
	ctx := context.Background()
	d := newLDAPDir(t, s, upstream.ModeNone)
	if _, err := d.Lookup(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := d.Lookup(ctx, "alice"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("Lookup with slapd down: %v, want ErrUnavailable", err)
	}
	if err := d.CheckPassword(ctx, &directory.User{Name: "alice", DN: s.UserDN("alice")}, "x"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("CheckPassword with slapd down: %v, want ErrUnavailable", err)
	}
	s.Start()
	if _, err := d.Lookup(ctx, "alice"); err != nil {
		t.Errorf("Lookup after restart: %v, want reconnect", err)
	}
	// A wrong service password is "unavailable", not "no such user".
	bad, err := directory.NewLDAP(directory.LDAPOptions{
		Upstream: &upstream.Config{Address: s.Addr, MasterUser: s.ServiceDN, MasterPassword: "wrong"},
		BaseDN:   s.BaseDN,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Lookup(ctx, "alice"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("Lookup with bad service password: %v, want ErrUnavailable", err)
	}
}

func TestNewLDAPValidates(t *testing.T) {
	up := &upstream.Config{Address: "127.0.0.1:1"}
	tests := []directory.LDAPOptions{
		{BaseDN: "dc=x"},
		{Upstream: up},
		{Upstream: up, BaseDN: "not a dn"},
		{Upstream: up, BaseDN: "dc=x", UserFilter: "(uid=alice)"},
		{Upstream: up, BaseDN: "dc=x", DisabledFilter: "(broken"},
	}
	for i, o := range tests {
		if _, err := directory.NewLDAP(o); err == nil {
			t.Errorf("case %d: NewLDAP(%+v) = nil error, want error", i, o)
		}
	}
}
