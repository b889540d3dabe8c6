package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// proxyAuthz is the RFC 4370 proxied authorization control (go-ldap has no
// type for it): critical, value = the authzId.
func proxyAuthz(authzID string) ldap.Control {
	return ldap.NewControlString("2.16.840.1.113730.3.4.18", true, authzID)
}

func ldapCode(err error) uint16 {
	var le *ldap.Error
	if errors.As(err, &le) {
		return le.ResultCode
	}
	return 0
}

func TestSlapdBind(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	tests := []struct {
		name     string
		dn       string
		password string
		want     uint16 // 0: success
	}{
		{"alice", s.UserDN("alice"), s.Users["alice"], 0},
		{"root user", s.UserDN("root"), s.Users["root"], 0},
		{"service", s.ServiceDN, s.ServicePassword, 0},
		{"rootdn", s.RootDN, s.RootPassword, 0},
		{"wrong password", s.UserDN("alice"), s.Users["bob"], ldap.LDAPResultInvalidCredentials},
		{"unknown user", s.UserDN("mallory"), "x", ldap.LDAPResultInvalidCredentials},
		{"disabled carol", s.UserDN("carol"), s.Users["carol"], ldap.LDAPResultInvalidCredentials},
		{"empty password", s.UserDN("alice"), "", ldap.LDAPResultUnwillingToPerform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.Conn(t, "", "")
			_, err := c.SimpleBind(&ldap.SimpleBindRequest{Username: tt.dn, Password: tt.password, AllowEmptyPassword: true})
			if got := ldapCode(err); got != tt.want || (tt.want == 0 && err != nil) {
				t.Errorf("bind: got code %d (%v), want %d", got, err, tt.want)
			}
		})
	}
}

func TestSlapdTLS(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	t.Run("starttls", func(t *testing.T) {
		c := s.Conn(t, "", "")
		if err := c.StartTLS(s.TLS.Clone()); err != nil {
			t.Fatalf("StartTLS: %v", err)
		}
		if err := c.Bind(s.UserDN("alice"), s.Users["alice"]); err != nil {
			t.Errorf("bind after StartTLS: %v", err)
		}
	})
	t.Run("ldaps", func(t *testing.T) {
		c, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(s.TLS.Clone()))
		if err != nil {
			t.Fatalf("dial %s: %v", s.LDAPSURL, err)
		}
		defer c.Close()
		if err := c.Bind(s.UserDN("alice"), s.Users["alice"]); err != nil {
			t.Errorf("bind over ldaps: %v", err)
		}
	})
}

// TestSlapdACL checks that the same search shows different entries to
// different identities, bound directly or through the service account with
// proxied authorization.
func TestSlapdACL(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	tests := []struct {
		name       string
		dn, pw     string
		authzID    string // proxied authorization; "" for none
		wantProj   []string
		wantPhones int // telephoneNumber values visible in ou=people
	}{
		{"alice", s.UserDN("alice"), s.Users["alice"], "", []string{"apollo"}, 4},
		{"bob", s.UserDN("bob"), s.Users["bob"], "", []string{"gemini"}, 1},
		{"service alone", s.ServiceDN, s.ServicePassword, "", nil, 0},
		{"service as alice", s.ServiceDN, s.ServicePassword, "dn:" + s.UserDN("alice"), []string{"apollo"}, 4},
		{"service as bob", s.ServiceDN, s.ServicePassword, "dn:" + s.UserDN("bob"), []string{"gemini"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.Conn(t, tt.dn, tt.pw)
			var ctrls []ldap.Control
			if tt.authzID != "" {
				ctrls = append(ctrls, proxyAuthz(tt.authzID))
			}
			res, err := c.Search(ldap.NewSearchRequest("ou=projects,"+s.BaseDN, ldap.ScopeWholeSubtree,
				ldap.NeverDerefAliases, 0, 0, false, "(objectClass=organizationalRole)", []string{"cn"}, ctrls))
			if err != nil {
				t.Fatalf("search projects: %v", err)
			}
			var got []string
			for _, e := range res.Entries {
				got = append(got, e.GetAttributeValue("cn"))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantProj) {
				t.Errorf("projects: got %v, want %v", got, tt.wantProj)
			}

			res, err = c.Search(ldap.NewSearchRequest("ou=people,"+s.BaseDN, ldap.ScopeSingleLevel,
				ldap.NeverDerefAliases, 0, 0, false, "(objectClass=inetOrgPerson)", []string{"telephoneNumber"}, ctrls))
			if err != nil {
				t.Fatalf("search people: %v", err)
			}
			phones := 0
			for _, e := range res.Entries {
				phones += len(e.GetAttributeValues("telephoneNumber"))
			}
			if len(res.Entries) != 4 || phones != tt.wantPhones {
				t.Errorf("people: got %d entries with %d phone numbers, want 4 with %d", len(res.Entries), phones, tt.wantPhones)
			}
		})
	}

	t.Run("service as someone outside ou=people", func(t *testing.T) {
		c := s.Conn(t, s.ServiceDN, s.ServicePassword)
		_, err := c.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, 0, false, "(objectClass=*)", nil, []ldap.Control{proxyAuthz("dn:" + s.RootDN)}))
		if got := ldapCode(err); got != ldap.LDAPResultAuthorizationDenied {
			t.Errorf("got code %d (%v), want %d", got, err, ldap.LDAPResultAuthorizationDenied)
		}
	})
}

// TestSlapdDirectoryView checks what the directory lookup reads through the
// service account: the root DSE, mail, memberOf, ppolicy attributes.
func TestSlapdDirectoryView(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	c := s.Conn(t, s.ServiceDN, s.ServicePassword)

	res, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"namingContexts", "supportedControl"}, nil))
	if err != nil {
		t.Fatalf("root DSE: %v", err)
	}
	if got := res.Entries[0].GetAttributeValue("namingContexts"); got != s.BaseDN {
		t.Errorf("namingContexts: got %q, want %q", got, s.BaseDN)
	}
	if !slices.Contains(res.Entries[0].GetAttributeValues("supportedControl"), "2.16.840.1.113730.3.4.18") {
		t.Errorf("supportedControl lacks proxied authorization: %v", res.Entries[0].GetAttributeValues("supportedControl"))
	}

	tests := []struct {
		uid        string
		wantMail   string
		wantGroups []string
		wantLocked bool
	}{
		{"alice", "alice@example.com", []string{s.GroupDN("staff")}, false},
		{"bob", "bob@example.com", []string{s.GroupDN("staff")}, false},
		{"carol", "carol@example.com", nil, true},
		{"root", "root@example.com", []string{s.GroupDN("admins")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.uid, func(t *testing.T) {
			res, err := c.Search(ldap.NewSearchRequest("ou=people,"+s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
				0, 0, false, "(uid="+ldap.EscapeFilter(tt.uid)+")",
				[]string{"uid", "mail", "memberOf", "pwdChangedTime", "pwdAccountLockedTime", "userPassword"}, nil))
			if err != nil || len(res.Entries) != 1 {
				t.Fatalf("search uid=%s: got %v, %v; want one entry", tt.uid, res, err)
			}
			e := res.Entries[0]
			if got := e.GetAttributeValue("mail"); got != tt.wantMail {
				t.Errorf("mail: got %q, want %q", got, tt.wantMail)
			}
			if got := e.GetAttributeValues("memberOf"); !slices.Equal(got, tt.wantGroups) {
				t.Errorf("memberOf: got %v, want %v", got, tt.wantGroups)
			}
			if got := e.GetAttributeValue("pwdAccountLockedTime") != ""; got != tt.wantLocked {
				t.Errorf("pwdAccountLockedTime present: got %v, want %v", got, tt.wantLocked)
			}
			if got := e.GetAttributeValue("pwdChangedTime"); got != "20240101000000Z" {
				t.Errorf("pwdChangedTime: got %q, want 20240101000000Z", got)
			}
			if got := e.GetAttributeValue("userPassword"); got != "" {
				t.Errorf("userPassword readable by the service: got %q, want nothing", got)
			}
		})
	}
}

func readAttr(t *testing.T, s *Slapd, dn, attr string) string {
	t.Helper()
	c := s.Conn(t, s.ServiceDN, s.ServicePassword)
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{attr}, nil))
	if err != nil {
		t.Fatalf("read %s of %s: %v", attr, dn, err)
	}
	return res.Entries[0].GetAttributeValue(attr)
}

func TestSlapdSetPassword(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	old := s.Users["alice"]
	before := time.Now().UTC().Truncate(time.Second)
	s.SetPassword(t, "alice", "new-Secret-1")

	changed, err := time.Parse("20060102150405Z", readAttr(t, s, s.UserDN("alice"), "pwdChangedTime"))
	if err != nil {
		t.Fatalf("pwdChangedTime: %v", err)
	}
	if changed.Before(before) || changed.After(time.Now().Add(time.Second)) {
		t.Errorf("pwdChangedTime: got %v, want between %v and now", changed, before)
	}
	if s.Users["alice"] != "new-Secret-1" {
		t.Errorf("Users[alice] not updated")
	}
	c := s.Conn(t, "", "")
	if err := c.Bind(s.UserDN("alice"), old); ldapCode(err) != ldap.LDAPResultInvalidCredentials {
		t.Errorf("bind with old password: got %v, want code 49", err)
	}
	if err := c.Bind(s.UserDN("alice"), "new-Secret-1"); err != nil {
		t.Errorf("bind with new password: %v", err)
	}
}

func TestSlapdLock(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	c := s.Conn(t, "", "")
	if err := c.Bind(s.UserDN("alice"), s.Users["alice"]); err != nil {
		t.Fatalf("bind before Lock: %v", err)
	}
	s.Lock(t, "alice")
	if err := c.Bind(s.UserDN("alice"), s.Users["alice"]); ldapCode(err) != ldap.LDAPResultInvalidCredentials {
		t.Errorf("bind after Lock: got %v, want code 49", err)
	}
	if got := readAttr(t, s, s.UserDN("alice"), "pwdAccountLockedTime"); got == "" {
		t.Errorf("pwdAccountLockedTime: got nothing, want a time")
	}
	if err := c.Bind(s.UserDN("bob"), s.Users["bob"]); err != nil {
		t.Errorf("bob after locking alice: %v", err)
	}
}

// TestSlapdWhoami proves ldap-utils work against the harness, with the
// password in a file (-y), never on the command line.
func TestSlapdWhoami(t *testing.T) {
	Require(t, "slapd", "slapadd", "ldapwhoami")
	s := StartSlapd(t, SlapdOptions{})
	bin, _ := LookPath("ldapwhoami")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(s.ServicePassword), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"plain proxied", []string{"-H", s.URL, "-e", "!authzid=dn:" + s.UserDN("alice")}, "dn:" + s.UserDN("alice")},
		{"starttls", []string{"-H", s.URL, "-ZZ"}, "dn:" + s.ServiceDN},
		{"ldaps proxied", []string{"-H", s.LDAPSURL, "-e", "!authzid=dn:" + s.UserDN("bob")}, "dn:" + s.UserDN("bob")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-x", "-D", s.ServiceDN, "-y", pwFile}, tt.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = s.ClientEnv()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("ldapwhoami %v: %v\n%s", tt.args, err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("ldapwhoami: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSlapdExtraEntries(t *testing.T) {
	const n = 2000
	s := StartSlapd(t, SlapdOptions{ExtraEntries: n})
	c := s.Conn(t, s.UserDN("bob"), s.Users["bob"])
	req := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest("ou=bulk,"+s.BaseDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases,
			0, 0, false, "(objectClass=device)", []string{"cn"}, nil)
	}
	res, err := c.Search(req())
	if got := ldapCode(err); got != ldap.LDAPResultSizeLimitExceeded {
		t.Errorf("plain search: got code %d (%v), want %d", got, err, ldap.LDAPResultSizeLimitExceeded)
	}
	if res != nil && len(res.Entries) != 1000 {
		t.Errorf("plain search: got %d entries, want 1000", len(res.Entries))
	}
	res, err = c.SearchWithPaging(req(), 500)
	if err != nil {
		t.Fatalf("paged search: %v", err)
	}
	if len(res.Entries) != n {
		t.Errorf("paged search: got %d entries, want %d", len(res.Entries), n)
	}
}

func TestSlapdRestart(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	s.SetPassword(t, "bob", "after-restart-1")
	s.Stop()
	if _, err := ldapDialOnce(s.URL); err == nil {
		t.Fatalf("dial after Stop: got a connection, want an error")
	}
	s.Start()
	c := s.Conn(t, "", "")
	if err := c.Bind(s.UserDN("bob"), "after-restart-1"); err != nil {
		t.Errorf("bind after restart: %v", err)
	}
	if b, err := os.ReadFile(s.LogPath); err != nil || !strings.Contains(string(b), "BIND") {
		t.Errorf("log %s: want BIND operations logged (err %v)", s.LogPath, err)
	}
}

func ldapDialOnce(url string) (*ldap.Conn, error) {
	c, err := ldap.DialURL(url)
	if err == nil {
		c.Close()
	}
	return c, err
}

// TestSlapdPortTaken checks that start notices when its port belongs to
// someone else instead of talking to the wrong server.
func TestSlapdPortTaken(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	s.Stop()
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Fatalf("listen %s: %v", s.Addr, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := s.start(); err == nil {
		t.Errorf("start with %s taken: got no error, want one", s.Addr)
	}
	if s.proc != nil {
		t.Errorf("start with %s taken: slapd left running", s.Addr)
	}
}
