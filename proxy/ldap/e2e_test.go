package ldap_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	ldapproxy "github.com/legate-proxy/legate/proxy/ldap"
	"github.com/legate-proxy/legate/store"
)

func TestE2EPerUserRights(t *testing.T) {
	e := newEnv(t, envOptions{})
	alicePW, _ := e.appPassword(t, "alice", "laptop")
	bobPW, _ := e.appPassword(t, "bob", "phone")
	base := "ou=projects," + e.slapd.BaseDN
	tests := []struct {
		name, url, tlsFlag, who, pw, see, notSee string
	}{
		{"alice starttls", e.url(), "-ZZ", e.slapd.UserDN("alice"), alicePW, "cn: apollo", "gemini"},
		{"bob starttls", e.url(), "-ZZ", e.slapd.UserDN("bob"), bobPW, "cn: gemini", "apollo"},
		{"alice ldaps by name", e.ldapsURL(), "", "alice", alicePW, "cn: apollo", "gemini"},
		{"bob ldaps by address", e.ldapsURL(), "", "bob@example.com", bobPW, "cn: gemini", "apollo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-LLL", "-x", "-H", tc.url, "-D", tc.who, "-y", tc.pw, "-b", base, "(objectClass=organizationalRole)", "cn"}
			if tc.tlsFlag != "" {
				args = append([]string{tc.tlsFlag}, args...)
			}
			out, code := e.run(t, "ldapsearch", args...)
			if code != 0 || !strings.Contains(out, tc.see) || strings.Contains(out, tc.notSee) {
				t.Errorf("ldapsearch: exit %d, output:\n%s\nwant exit 0 with %q and without %q", code, out, tc.see, tc.notSee)
			}
		})
	}
	// Without Legate the service account alone sees neither project.
	t.Run("whoami", func(t *testing.T) {
		out, code := e.run(t, "ldapwhoami", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", alicePW)
		if want := "dn:" + e.slapd.UserDN("alice"); code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("ldapwhoami: exit %d %q, want 0 %q", code, out, want)
		}
		out, code = e.run(t, "ldapwhoami", "-ZZ", "-x", "-H", e.url())
		if code != 0 || strings.TrimSpace(out) != "anonymous" {
			t.Errorf("anonymous ldapwhoami: exit %d %q, want 0 \"anonymous\"", code, out)
		}
	})
	t.Run("compare", func(t *testing.T) {
		out, code := e.run(t, "ldapcompare", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", alicePW,
			"cn=apollo,"+base, "description:visible to alice only")
		if code != 6 || !strings.Contains(out, "TRUE") { // compareTrue
			t.Errorf("ldapcompare as alice: exit %d %q, want 6 TRUE", code, out)
		}
		out, code = e.run(t, "ldapcompare", "-ZZ", "-x", "-H", e.url(), "-D", "bob", "-y", bobPW,
			"cn=apollo,"+base, "description:visible to alice only")
		if code == 6 {
			t.Errorf("ldapcompare as bob on alice's entry: exit %d %q, want a refusal", code, out)
		}
	})
	t.Run("root DSE before bind", func(t *testing.T) {
		out, code := e.run(t, "ldapsearch", "-LLL", "-x", "-H", e.url(), "-b", "", "-s", "base", "+")
		if code != 0 || !strings.Contains(out, "namingContexts: "+e.slapd.BaseDN) {
			t.Errorf("root DSE: exit %d:\n%s\nwant namingContexts", code, out)
		}
		out, code = e.run(t, "ldapsearch", "-LLL", "-x", "-H", e.url(), "-b", base)
		if code != 50 {
			t.Errorf("anonymous search: exit %d:\n%s\nwant 50", code, out)
		}
	})
	t.Run("writes disabled", func(t *testing.T) {
		out, code := e.run(t, "ldapdelete", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", alicePW, "cn=apollo,"+base)
		if code != 53 {
			t.Errorf("ldapdelete: exit %d %q, want 53", code, out)
		}
	})
}

func TestE2EBindRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	alicePW, _ := e.appPassword(t, "alice", "laptop")
	rootPW, _ := e.appPassword(t, "root", "printer")
	carolPW, _ := e.appPassword(t, "carol", "laptop")
	wrong := e.secretFile(t, "AAAA-BBBB-CCCC-DDDD")
	empty := e.secretFile(t, "")
	base := "ou=projects," + e.slapd.BaseDN
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantText string
	}{
		{"plaintext bind", []string{"-x", "-H", e.url(), "-D", "alice", "-y", alicePW}, 13, "Confidentiality required"},
		{"empty password", []string{"-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", empty}, 53, "unauthenticated bind"},
		{"wrong password", []string{"-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", wrong}, 49, "invalid credentials"},
		{"unknown user", []string{"-ZZ", "-x", "-H", e.url(), "-D", "mallory", "-y", wrong}, 49, "invalid credentials"},
		{"admin", []string{"-ZZ", "-x", "-H", e.url(), "-D", "root", "-y", rootPW}, 49, "refused"},
		{"disabled", []string{"-ZZ", "-x", "-H", e.url(), "-D", "carol", "-y", carolPW}, 49, "disabled"},
		{"sasl", []string{"-ZZ", "-Y", "PLAIN", "-O", "none", "-U", "alice", "-H", e.url(), "-y", alicePW}, 7, "not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := e.run(t, "ldapwhoami", tc.args...)
			if code != tc.wantCode || !strings.Contains(strings.ToLower(out), strings.ToLower(tc.wantText)) {
				t.Errorf("ldapwhoami: exit %d, output %q; want exit %d with %q", code, out, tc.wantCode, tc.wantText)
			}
		})
	}
	t.Run("client proxied authz control", func(t *testing.T) {
		out, code := e.run(t, "ldapsearch", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", alicePW,
			"-e", "!authzid=dn:"+e.slapd.UserDN("bob"), "-b", base)
		if code != 50 || strings.Contains(out, "gemini") {
			t.Errorf("ldapsearch with authzid: exit %d:\n%s\nwant 50 and no gemini", code, out)
		}
	})
}

func TestE2EServiceMode(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(o *ldapproxy.Options) {
		o.Authz = ldapproxy.AuthzService
		o.SearchBases = []string{"ou=people,dc=example,dc=com"}
		o.Attributes = []string{"uid", "cn", "mail"}
	}})
	pw, _ := e.appPassword(t, "alice", "laptop")
	out, code := e.run(t, "ldapsearch", "-LLL", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", pw,
		"-b", "ou=projects,"+e.slapd.BaseDN)
	if code != 50 {
		t.Errorf("search outside the bases: exit %d:\n%s\nwant 50", code, out)
	}
	out, code = e.run(t, "ldapsearch", "-LLL", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", pw,
		"-b", "OU=People,"+e.slapd.BaseDN, "(uid=bob)")
	if code != 0 || !strings.Contains(out, "mail: bob@example.com") || strings.Contains(out, "sn:") || strings.Contains(out, "objectClass:") {
		t.Errorf("search inside the bases: exit %d:\n%s\nwant bob's uid/cn/mail only", code, out)
	}
	out, code = e.run(t, "ldapwhoami", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", pw)
	if want := "dn:" + e.slapd.UserDN("alice"); code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("ldapwhoami: exit %d %q, want %q", code, out, want)
	}
}

func TestE2ERevokeOnPasswordChange(t *testing.T) {
	e := newEnv(t, envOptions{cacheTTL: 500 * time.Millisecond})
	old, _ := e.appPassword(t, "alice", "old")
	bind := func(pw string) (string, int) {
		return e.run(t, "ldapwhoami", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", pw)
	}
	if out, code := bind(old); code != 0 {
		t.Fatalf("before the change: exit %d %q, want 0", code, out)
	}
	time.Sleep(1100 * time.Millisecond) // pwdChangedTime has second resolution
	e.slapd.SetPassword(t, "alice", "A-new-primary-password-1")
	time.Sleep(600 * time.Millisecond) // cache TTL
	if out, code := bind(old); code != 49 || !strings.Contains(out, "expired") {
		t.Errorf("after the change: exit %d %q, want 49 expired", code, out)
	}
	time.Sleep(1100 * time.Millisecond)
	fresh, _ := e.appPassword(t, "alice", "new")
	if out, code := bind(fresh); code != 0 {
		t.Errorf("new app password: exit %d %q, want 0", code, out)
	}
}

func TestE2ERevocationClosesSession(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOptions{})
	file, id := e.appPassword(t, "alice", "laptop")
	secret, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ldap.DialURL(e.url(), ldap.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetTimeout(5 * time.Second)
	if err := c.StartTLS(e.certs.ClientTLS.Clone()); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if err := c.Bind("alice", string(secret)); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	res, err := c.Search(ldap.NewSearchRequest("ou=projects,"+e.slapd.BaseDN, ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(cn=*)", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("cn") != "apollo" {
		t.Fatalf("Search: got %v %v, want apollo only", res, err)
	}
	if _, err := e.store.Revoke(context.Background(), "alice", store.Selector{ID: id}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n := e.sessions.KillAppPasswords(id); n != 1 {
		t.Fatalf("killed %d sessions, want 1", n)
	}
	for !c.IsClosing() && time.Since(start) < 2*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(start); !c.IsClosing() || took > time.Second {
		t.Errorf("session closed after %v (closing %v), want within 1s", took, c.IsClosing())
	}
	out, code := e.run(t, "ldapwhoami", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", file)
	if code != 49 {
		t.Errorf("bind with the revoked password: exit %d %q, want 49", code, out)
	}
}
