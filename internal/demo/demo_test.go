package demo

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunLDAP runs the demo in process: the app password binds through
// Legate's LDAP front-end, searches reach the embedded directory with the
// service-mode attribute list applied, and Run returns promptly once ctx
// ends, leaving no goroutine behind (TestMain).
func TestRunLDAP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *Daemon, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{IMAP: "-", SMTP: "-", LDAP: "127.0.0.1:0", Portal: "-", Dir: t.TempDir(),
			Stdout: io.Discard, Started: func(d *Daemon) { started <- d }})
	}()
	var d *Daemon
	select {
	case d = <-started:
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not start within 30s")
	}
	if d.Addr("imap") != nil || d.Addr("submission") != nil {
		t.Errorf("IMAP and SMTP listen although disabled with -")
	}
	c, err := ldap.DialURL("ldap://" + d.Addr("ldap").String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(d.User, "AAAA-BBBB-CCCC-DDDD"); resultCode(err) != ldap.LDAPResultInvalidCredentials {
		t.Errorf("bind with a wrong password: got %v, want invalidCredentials", err)
	}
	if err := c.Bind(d.User, d.Password); err != nil {
		t.Fatalf("bind with the app password: %v", err)
	}
	res, err := c.Search(ldap.NewSearchRequest(ldapBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0,
		false, "(|(cn=a*)(mail=b*))", []string{"cn", "mail"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 2 || res.Entries[0].GetAttributeValue("mail") != "alice@legate.test" ||
		res.Entries[1].GetAttributeValue("cn") != "Bob Example" {
		t.Errorf("address-book search: got %d entries, want alice and bob", len(res.Entries))
	}
	// Service mode confines input too (#13.4): asking for an attribute
	// outside upstream.ldap.attributes is refused; "*" is stripped.
	_, err = c.Search(ldap.NewSearchRequest(ldapBase, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0,
		false, "(objectClass=*)", []string{"o", "objectClass"}, nil))
	if resultCode(err) != ldap.LDAPResultInsufficientAccessRights {
		t.Errorf("base search for o: got %v, want insufficientAccessRights", err)
	}
	res, err = c.Search(ldap.NewSearchRequest(ldapBase, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0,
		false, "(objectClass=*)", []string{"*"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("base search: %v, %v", res, err)
	}
	if got := res.Entries[0].GetAttributeValue("o"); got != "" {
		t.Errorf("attribute o: got %q, want it stripped (not in upstream.ldap.attributes)", got)
	}
	c.Close()

	cancel()
	start := time.Now()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	t.Logf("shutdown took %v", time.Since(start))
}
