package demo

import (
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func startLDAPUpstream(t *testing.T) *ldapUpstream {
	t.Helper()
	u := newLDAPUpstream("s3cret", slog.New(slog.DiscardHandler))
	if err := u.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.close)
	return u
}

func dialUpstream(t *testing.T, u *ldapUpstream) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldap://" + u.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func resultCode(err error) uint16 {
	var le *ldap.Error
	if errors.As(err, &le) {
		return le.ResultCode
	}
	return 0
}

func TestLDAPUpstreamBind(t *testing.T) {
	u := startLDAPUpstream(t)
	tests := []struct {
		dn, pw string
		want   uint16
	}{
		{ldapServiceDN, "s3cret", ldap.LDAPResultSuccess},
		{"CN=Legate, OU=Services, DC=legate, DC=test", "s3cret", ldap.LDAPResultSuccess},
		{ldapServiceDN, "wrong", ldap.LDAPResultInvalidCredentials},
		{"uid=demo,ou=people," + ldapBase, "s3cret", ldap.LDAPResultInvalidCredentials},
		{"not a dn", "s3cret", ldap.LDAPResultInvalidCredentials},
	}
	for _, tt := range tests {
		c := dialUpstream(t, u)
		if got := resultCode(c.Bind(tt.dn, tt.pw)); got != tt.want {
			t.Errorf("bind %q: got code %d, want %d", tt.dn, got, tt.want)
		}
	}
}

func TestLDAPUpstreamSearch(t *testing.T) {
	u := startLDAPUpstream(t)
	c := dialUpstream(t, u)
	if err := c.Bind(ldapServiceDN, "s3cret"); err != nil {
		t.Fatal(err)
	}
	people := "ou=people," + ldapBase
	tests := []struct {
		base   string
		scope  int
		filter string
		want   []string // DNs' first RDN values, in directory order
		code   uint16
	}{
		{ldapBase, ldap.ScopeWholeSubtree, "(uid=demo)", []string{"demo"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(UID=DEMO)", []string{"demo"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(mail=*@legate.test)", []string{"demo", "alice", "bob"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(|(cn=a*)(mail=b*))", []string{"alice", "bob"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(&(objectClass=person)(!(uid=demo)))", []string{"alice", "bob"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(cn=*Ex*ple)", []string{"alice", "bob"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(cn=Al*ice*)", []string{"alice"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(cn=Alice*ice)", nil, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(telephoneNumber=*)", []string{"demo", "alice", "bob"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(uid>=b)", []string{"demo", "bob"}, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(nosuch=*)", nil, 0},
		{ldapBase, ldap.ScopeWholeSubtree, "(objectClass=*)", []string{"legate", "people", "services", "legate", "demo", "alice", "bob"}, 0},
		{ldapBase, ldap.ScopeSingleLevel, "(objectClass=*)", []string{"people", "services"}, 0},
		{ldapBase, ldap.ScopeBaseObject, "(objectClass=*)", []string{"legate"}, 0},
		{people, ldap.ScopeSingleLevel, "(objectClass=*)", []string{"demo", "alice", "bob"}, 0},
		{"uid=alice," + people, ldap.ScopeBaseObject, "(objectClass=*)", []string{"alice"}, 0},
		{"ou=nowhere," + ldapBase, ldap.ScopeWholeSubtree, "(objectClass=*)", nil, ldap.LDAPResultNoSuchObject},
	}
	for _, tt := range tests {
		req := ldap.NewSearchRequest(tt.base, tt.scope, ldap.NeverDerefAliases, 0, 0, false, tt.filter, []string{"uid"}, nil)
		res, err := c.Search(req)
		if got := resultCode(err); got != tt.code {
			t.Errorf("%s %d %s: got code %d (%v), want %d", tt.base, tt.scope, tt.filter, got, err, tt.code)
			continue
		}
		var got []string
		if res != nil {
			for _, e := range res.Entries {
				dn, _ := ldap.ParseDN(e.DN)
				got = append(got, dn.RDNs[0].Attributes[0].Value)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s %d %s: got %v, want %v", tt.base, tt.scope, tt.filter, got, tt.want)
		}
	}
}

func TestLDAPUpstreamAttributes(t *testing.T) {
	u := startLDAPUpstream(t)
	c := dialUpstream(t, u)
	if err := c.Bind(ldapServiceDN, "s3cret"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		attrs []string
		want  []string
	}{
		{[]string{"MAIL", "cn"}, []string{"cn", "mail"}},
		{[]string{"1.1"}, nil},
		{nil, []string{"objectClass", "uid", "cn", "sn", "mail", "telephoneNumber"}},
	}
	for _, tt := range tests {
		res, err := c.Search(ldap.NewSearchRequest(ldapBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0,
			false, "(uid=demo)", tt.attrs, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("search %v: %v, %v", tt.attrs, res, err)
		}
		var got []string
		for _, a := range res.Entries[0].Attributes {
			got = append(got, a.Name)
		}
		slices.Sort(got)
		slices.Sort(tt.want)
		if !slices.Equal(got, tt.want) {
			t.Errorf("attributes %v: got %v, want %v", tt.attrs, got, tt.want)
		}
		if slices.Contains(tt.want, "mail") && res.Entries[0].GetAttributeValue("mail") != demoAddress {
			t.Errorf("mail: got %q, want %q", res.Entries[0].GetAttributeValue("mail"), demoAddress)
		}
	}
}

func TestLDAPUpstreamUnbound(t *testing.T) {
	u := startLDAPUpstream(t)
	c := dialUpstream(t, u)
	// The root DSE is readable anonymously.
	res, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"namingContexts"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("namingContexts") != ldapBase {
		t.Fatalf("root DSE: got %v, %v; want namingContexts %s", res, err, ldapBase)
	}
	// Anything else needs the service bind, and a failed bind drops it.
	search := ldap.NewSearchRequest(ldapBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(uid=demo)", nil, nil)
	if _, err := c.Search(search); resultCode(err) != ldap.LDAPResultInsufficientAccessRights {
		t.Errorf("unbound search: got %v, want insufficientAccessRights", err)
	}
	if err := c.Bind(ldapServiceDN, "s3cret"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Search(search); err != nil {
		t.Errorf("bound search: %v", err)
	}
	_ = c.Bind(ldapServiceDN, "wrong")
	if _, err := c.Search(search); resultCode(err) != ldap.LDAPResultInsufficientAccessRights {
		t.Errorf("search after a failed bind: got %v, want insufficientAccessRights", err)
	}
}

// TestLDAPUpstreamClose checks that close returns promptly once clients
// are gone, and that the port is released.
func TestLDAPUpstreamClose(t *testing.T) {
	u := newLDAPUpstream("s3cret", slog.New(slog.DiscardHandler))
	if err := u.start(); err != nil {
		t.Fatal(err)
	}
	c, err := ldap.DialURL("ldap://" + u.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(ldapServiceDN, "s3cret"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	start := time.Now()
	u.close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %v, want under 2s", d)
	}
	if c, err := ldap.DialURL("ldap://" + u.addr.String()); err == nil {
		c.Close()
		t.Error("upstream still accepts connections after close")
	}
}
