package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"github.com/go-ldap/ldap/v3"
)

//go:embed testdata/slapd/slapd.conf.tmpl testdata/slapd/base.ldif.tmpl
var slapdFiles embed.FS

var slapdTemplates = template.Must(template.ParseFS(slapdFiles, "testdata/slapd/*.tmpl"))

// slapdUsers are the people loaded into every directory; carol is disabled
// (pwdAccountLockedTime set), root is in cn=admins, alice and bob in cn=staff.
var slapdUsers = []string{"alice", "bob", "carol", "root"}

// SlapdOptions configures StartSlapd. The zero value loads the fixed data set
// only.
type SlapdOptions struct {
	// ExtraEntries adds that many readable entries cn=entryNNNNN under
	// ou=bulk (loaded with slapadd: 10,000 start in about 0.3 s); zero
	// adds none and no ou=bulk.
	ExtraEntries int
}

// Slapd is a running OpenLDAP slapd (2.5) with an mdb database for
// dc=example,dc=com: ou=people (alice, bob, carol [disabled], root),
// ou=groups (cn=admins: root; cn=staff: alice, bob; memberOf is written
// on the people), ou=services (cn=legate with authzTo for everybody in
// ou=people), ou=projects (cn=apollo readable by alice only, cn=gemini by
// bob only) and the ppolicy overlay with a default policy (pwdLockout TRUE).
// It listens for plain LDAP (with StartTLS) and LDAPS on 127.0.0.1.
type Slapd struct {
	// Addr is host:port of the plain listener (StartTLS available).
	Addr string
	// LDAPSAddr is host:port of the implicit-TLS listener.
	LDAPSAddr string
	// URL and LDAPSURL are ldap://Addr and ldaps://LDAPSAddr.
	URL, LDAPSURL string
	// BaseDN is dc=example,dc=com.
	BaseDN string
	// RootDN is the rootdn (bypasses ACLs); RootPassword is random.
	RootDN, RootPassword string
	// ServiceDN is cn=legate,ou=services,dc=example,dc=com; it may read
	// people and groups and assume the identity of anybody in ou=people
	// (RFC 4370), but sees nothing under ou=projects on its own.
	ServiceDN, ServicePassword string
	// Users maps uid to its (random) password: alice, bob, carol, root.
	Users map[string]string
	// CAFile is the PEM CA that signed the server certificate.
	CAFile string
	// TLS is a client configuration that trusts CAFile (ServerName
	// localhost); clone it before changing it.
	TLS *tls.Config
	// LogPath is slapd's output (-d 256: connections and operations).
	LogPath string

	t    testing.TB
	dir  string
	conf string
	bin  string
	proc *process // nil while stopped
}

// StartSlapd writes a configuration and data set into a temporary
// directory, loads it with slapadd and starts slapd in the foreground in
// its own process group. It is stopped by t.Cleanup; on a failed test the
// tail of its log is written to the test log. The caller should have called
// Require(t, "slapd", "slapadd"); StartSlapd does so too.
func StartSlapd(t testing.TB, opts SlapdOptions) *Slapd {
	t.Helper()
	Require(t, "slapd", "slapadd")
	bin, _ := LookPath("slapd")
	slapadd, _ := LookPath("slapadd")
	certs := NewCerts(t)
	dir := TempDir(t)

	const base = "dc=example,dc=com"
	s := &Slapd{
		BaseDN:          base,
		RootDN:          "cn=admin," + base,
		RootPassword:    slapdSecret(t),
		ServiceDN:       "cn=legate,ou=services," + base,
		ServicePassword: slapdSecret(t),
		Users:           make(map[string]string),
		CAFile:          certs.CAFile,
		TLS:             certs.ClientTLS,
		LogPath:         filepath.Join(dir, "slapd.log"),
		t:               t,
		dir:             dir,
		conf:            filepath.Join(dir, "slapd.conf"),
		bin:             bin,
	}
	hashes := make(map[string]string)
	for _, u := range slapdUsers {
		s.Users[u] = slapdSecret(t)
		hashes[u] = ssha(t, s.Users[u])
	}
	data := map[string]any{
		"Dir": dir, "BaseDN": base, "RootDN": s.RootDN, "ServiceDN": s.ServiceDN,
		"CAFile": certs.CAFile, "CertFile": certs.CertFile, "KeyFile": certs.KeyFile,
		"RootPasswordHash": ssha(t, s.RootPassword), "ServicePasswordHash": ssha(t, s.ServicePassword),
		"UserHashes": hashes,
	}
	renderTemplate(t, s.conf, "slapd.conf.tmpl", data, 0o600)
	ldif := filepath.Join(dir, "data.ldif")
	renderTemplate(t, ldif, "base.ldif.tmpl", data, 0o600)
	if opts.ExtraEntries > 0 {
		appendBulk(t, ldif, base, opts.ExtraEntries)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}

	// -q: quick mode, no consistency checks; fine for generated data.
	out, err := exec.Command(slapadd, "-q", "-f", s.conf, "-l", ldif).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: slapadd: %v\n%s", err, out)
	}

	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("%s", tail(60, s.LogPath))
		}
	})
	// The ports were free a moment ago; another process may take one
	// before slapd binds it, so a failed first start tries new ports.
	for attempt := 1; ; attempt++ {
		s.Addr, s.LDAPSAddr = FreeAddr(t), FreeAddr(t)
		s.URL, s.LDAPSURL = "ldap://"+s.Addr, "ldaps://"+s.LDAPSAddr
		err := s.start()
		if err == nil {
			return s
		}
		if attempt == 3 {
			t.Fatalf("%v\n%s", err, tail(40, s.LogPath))
		}
		t.Logf("%v; trying other ports", err)
	}
}

// UserDN returns uid=<uid>,ou=people,dc=example,dc=com.
func (s *Slapd) UserDN(uid string) string { return "uid=" + uid + ",ou=people," + s.BaseDN }

// GroupDN returns cn=<cn>,ou=groups,dc=example,dc=com.
func (s *Slapd) GroupDN(cn string) string { return "cn=" + cn + ",ou=groups," + s.BaseDN }

// Start starts slapd on the same ports and waits until it answers LDAP
// on both. It fails the test if slapd is already running or does not come
// up within 15 seconds. Call it from the goroutine of the test that called
// StartSlapd.
func (s *Slapd) Start() {
	s.t.Helper()
	if s.proc != nil {
		s.t.Fatalf("testenv: slapd: Start while running")
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("%v\n%s", err, tail(40, s.LogPath))
	}
}

func (s *Slapd) start() error {
	urls := s.URL + "/ " + s.LDAPSURL + "/"
	cmd := exec.Command(s.bin, "-d", "256", "-h", urls, "-f", s.conf)
	p, err := startProcess("slapd", cmd, s.LogPath)
	if err != nil {
		return err
	}
	s.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = p.waitReady(ctx, s.Addr, s.LDAPSAddr)
	if err == nil {
		// Something else may hold a port: check it is this slapd.
		err = s.probe()
	}
	if err != nil {
		s.Stop()
		return fmt.Errorf("testenv: slapd did not start: %w", err)
	}
	return nil
}

// probe binds as the rootdn over both listeners.
func (s *Slapd) probe() error {
	for _, url := range []string{s.URL, s.LDAPSURL} {
		c, err := ldap.DialURL(url, ldap.DialWithTLSConfig(s.TLS.Clone()),
			ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
		if err != nil {
			return err
		}
		c.SetTimeout(5 * time.Second)
		err = c.Bind(s.RootDN, s.RootPassword)
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", url, err)
		}
	}
	if s.proc.exited() {
		return fmt.Errorf("slapd exited")
	}
	return nil
}

// Stop terminates slapd (SIGTERM, SIGKILL to its process group after five
// seconds) and waits until it is gone, and with it its listeners.
// Stopping a stopped server does nothing.
func (s *Slapd) Stop() {
	if s.proc == nil {
		return
	}
	if err := s.proc.stop(5 * time.Second); err != nil {
		s.t.Errorf("%v", err)
	}
	s.proc = nil
}

// Conn dials the plain listener and binds as dn with password; an empty dn
// leaves the connection anonymous. The connection is closed by t.Cleanup.
func (s *Slapd) Conn(t testing.TB, dn, password string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("testenv: slapd: dial: %v", err)
	}
	c.SetTimeout(10 * time.Second)
	t.Cleanup(func() { c.Close() })
	if dn != "" {
		if err := c.Bind(dn, password); err != nil {
			t.Fatalf("testenv: slapd: bind as %s: %v", dn, err)
		}
	}
	return c
}

// SetPassword changes a user's password as the rootdn with the RFC 3062
// Password Modify operation (what ldappasswd does); ppolicy sets
// pwdChangedTime (second resolution). Users[uid] is updated.
func (s *Slapd) SetPassword(t testing.TB, uid, newPassword string) {
	t.Helper()
	c := s.Conn(t, s.RootDN, s.RootPassword)
	defer c.Close()
	if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest(s.UserDN(uid), "", newPassword)); err != nil {
		t.Fatalf("testenv: slapd: set password of %s: %v", uid, err)
	}
	s.Users[uid] = newPassword
}

// Lock sets pwdAccountLockedTime on a user as the rootdn: with pwdLockout
// TRUE and no lockout duration the user's own binds then fail with 49.
func (s *Slapd) Lock(t testing.TB, uid string) {
	t.Helper()
	c := s.Conn(t, s.RootDN, s.RootPassword)
	defer c.Close()
	m := ldap.NewModifyRequest(s.UserDN(uid), nil)
	m.Replace("pwdAccountLockedTime", []string{time.Now().UTC().Format("20060102150405Z")})
	if err := c.Modify(m); err != nil {
		t.Fatalf("testenv: slapd: lock %s: %v", uid, err)
	}
}

// ClientEnv is the environment for ldap-utils commands (ldapsearch,
// ldapwhoami): CAFile is trusted and certificates are checked. (Not
// LDAPNOINIT: it would also ignore these LDAPTLS_ variables.)
func (s *Slapd) ClientEnv() []string {
	return append(os.Environ(), "LDAPTLS_CACERT="+s.CAFile, "LDAPTLS_REQCERT=demand")
}

func renderTemplate(t testing.TB, path, name string, data any, mode os.FileMode) {
	t.Helper()
	var buf bytes.Buffer
	if err := slapdTemplates.ExecuteTemplate(&buf, name, data); err != nil {
		t.Fatalf("testenv: slapd: render %s: %v", name, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), mode); err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
}

// appendBulk appends ou=bulk and n entries cn=entryNNNNN to an LDIF file.
func appendBulk(t testing.TB, path, base string, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "\ndn: ou=bulk,%s\nobjectClass: organizationalUnit\nou: bulk\n", base)
	for i := 1; i <= n; i++ {
		cn := "entry" + fmt.Sprintf("%05d", i)
		fmt.Fprintf(w, "\ndn: cn=%s,ou=bulk,%s\nobjectClass: device\ncn: %s\nserialNumber: %d\n", cn, base, cn, i)
	}
	err = errors.Join(w.Flush(), f.Close())
	if err != nil {
		t.Fatalf("testenv: slapd: bulk ldif: %v", err)
	}
}

// ssha returns the {SSHA} userPassword value for password, the scheme
// slappasswd uses by default, without putting the secret on a command line.
func ssha(t testing.TB, password string) string {
	t.Helper()
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}

// slapdSecret returns 18 random bytes, base64url-encoded (24 characters).
func slapdSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
