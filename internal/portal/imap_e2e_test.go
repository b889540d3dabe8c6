package portal_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/portal/demoidp"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/proxy/imap"
	"github.com/legate-proxy/legate/store/bolt"
)

// TestBrowserToDovecot is the whole user story: sign in with MFA in a real
// browser, create "Laptop", log in with it through Legate's IMAP front-end to
// the real Dovecot (curl), hold an IDLE session, revoke on the page, and see
// the IDLE session closed within a second and the next login fail.
func TestBrowserToDovecot(t *testing.T) {
	testenv.Require(t, "dovecot", "curl", "chromium")
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})

	ctx := context.Background()
	st, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(t.TempDir(), "legate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir, err := directory.NewStatic([]directory.StaticUser{{Name: "alice", Addresses: []string{"alice@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.AllowPlaintextLoopback = true
	log := portaltest.TestLogger(t)
	svc := auth.New(auth.Options{Store: st, Directory: dir, Policy: &pol, Logger: log})
	reg := session.New()
	local := &control.Service{Store: svc.Store(), Directory: svc.Directory, Policy: svc.Policy, Explainer: svc, Registry: reg}

	tlsCfg, err := upstream.ClientTLS(dc.CAFile, "localhost", false)
	if err != nil {
		t.Fatal(err)
	}
	srv := imap.NewServer(imap.Options{Auth: svc, Sessions: reg, Logger: log, Upstream: &upstream.Config{
		Address: dc.IMAPAddr, Mode: upstream.ModeSTARTTLS, TLS: tlsCfg,
		MasterUser: dc.MasterUser, MasterPassword: dc.MasterPassword}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	env := portaltest.Start(t, portaltest.Options{Control: local, Users: []demoidp.User{{Username: "alice"}}})
	b := portaltest.NewBrowser(t, env)
	b.SignIn("alice")
	secret := b.Create("Laptop")
	if len(secret) != 19 {
		t.Fatalf("secret on the page: got %q, want XXXX-XXXX-XXXX-XXXX", secret)
	}

	before := dc.LoginCount("alice")
	if err := curlList(addr, secret); err != nil {
		t.Fatalf("curl through Legate with the new password: %v", err)
	}
	if got := dc.LoginCount("alice"); got != before+1 {
		t.Errorf("Dovecot logins for alice: got %d, want %d", got, before+1)
	}

	idle := openIdle(t, addr, secret)
	b.Revoke("Laptop")
	revoked := time.Now()
	if err := idle.waitClosed(2 * time.Second); err != nil {
		t.Fatalf("IDLE session after revoke on the page: %v", err)
	}
	if took := time.Since(revoked); took > time.Second {
		t.Errorf("IDLE session closed %v after revoke, want within 1s", took)
	}
	if !strings.Contains(idle.seen, "* BYE") {
		t.Errorf("IDLE session got %q before close, want * BYE", idle.seen)
	}
	if err := curlList(addr, secret); err == nil {
		t.Fatal("curl after revoke: got success, want failure")
	}
	b.Screenshot("after-revoke-dovecot")
}

// curlList lists mailboxes over IMAP with curl, the credentials on stdin
// (a curl config), never in argv.
func curlList(addr, secret string) error {
	cmd := exec.Command("curl", "-s", "-S", "--max-time", "10", "-K", "-", fmt.Sprintf("imap://%s/", addr))
	cmd.Stdin = strings.NewReader(fmt.Sprintf("user = \"alice:%s\"\n", secret))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "INBOX") {
		return fmt.Errorf("no INBOX in the listing: %s", out)
	}
	return nil
}

type idleConn struct {
	c    net.Conn
	r    *bufio.Reader
	seen string
}

// openIdle logs in through the proxy and enters IDLE.
func openIdle(t *testing.T, addr, secret string) *idleConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ic := &idleConn{c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	ic.expect(t, "* OK")
	fmt.Fprintf(c, "a LOGIN alice %s\r\n", secret)
	ic.expect(t, "a OK")
	fmt.Fprintf(c, "b SELECT INBOX\r\n")
	ic.expect(t, "b OK")
	fmt.Fprintf(c, "c IDLE\r\n")
	ic.expect(t, "+ ")
	c.SetDeadline(time.Time{})
	return ic
}

func (ic *idleConn) expect(t *testing.T, prefix string) {
	t.Helper()
	for {
		line, err := ic.r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, prefix) {
			return
		}
	}
}

// waitClosed reads until the connection closes, within d.
func (ic *idleConn) waitClosed(d time.Duration) error {
	ic.c.SetReadDeadline(time.Now().Add(d))
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, err := ic.r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			ic.seen = b.String()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("still open after %v (got %q)", d, ic.seen)
			}
			return nil
		}
	}
}
