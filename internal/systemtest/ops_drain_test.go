package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/daemon"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

// opsGrace is limits.shutdown_grace in the drain test.
const opsGrace = 2 * time.Second

// TestDrainOnShutdown runs what `legate serve` runs and ends it the way
// SIGTERM does: with an IMAP client in IDLE, an SMTP client halfway through
// DATA and a bound LDAP client. The message finishes and is relayed, IMAP
// gets `* BYE` and LDAP a Notice of Disconnection once the grace is over,
// Serve returns nil (exit 0), and the logins just before are on disk.
func TestDrainOnShutdown(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	dir := t.TempDir()
	certs := testenv.NewCerts(t)
	cfgPath := writeDrainConfig(t, dir, certs, ups)
	logs := &SyncBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	started := make(chan *daemon.Daemon, 1)
	served := make(chan struct{})
	var serveErr error
	go func() {
		defer close(served)
		serveErr = daemon.Serve(ctx, daemon.ServeOptions{ConfigPath: cfgPath, Stderr: logs,
			Started: func(d *daemon.Daemon) { started <- d }})
	}()
	t.Cleanup(func() {
		stop()
		<-served
		if t.Failed() {
			t.Logf("legate log (tail):\n%s", tailLines(logs.String(), 40))
		}
	})
	var d *daemon.Daemon
	select {
	case d = <-started:
	case <-served:
		t.Fatalf("serve: %v\n%s", serveErr, logs)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start within 30s")
	}
	ap, err := d.Control().CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "Laptop", Via: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	tc := certs.ClientTLS.Clone()
	imapAddr := d.Addr("imaps").String()

	// IMAP in IDLE, SMTP in the middle of DATA, LDAP bound, in that order.
	ic, _ := DialIMAP(t, imapAddr, tc)
	if ans, err := ic.Login("a", "alice", ap.Secret, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("IMAP LOGIN: got %q (%v), want OK", ans, err)
	}
	if ans, _, err := ic.Command("b", "SELECT INBOX", 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("IMAP SELECT: got %q (%v), want OK", ans, err)
	}
	fmt.Fprint(ic.Conn, "c IDLE\r\n")
	if l, err := ic.ReadLine(10 * time.Second); err != nil || !strings.HasPrefix(l, "+") {
		t.Fatalf("IMAP IDLE: got %q (%v), want a continuation", l, err)
	}
	sc := DialSMTPS(t, d.Addr("submissions").String(), tc)
	sc.Login(t, "alice", ap.Secret)
	for _, step := range []struct {
		cmd  string
		want int
	}{{"MAIL FROM:<alice@example.com>", 250}, {"RCPT TO:<bob@example.com>", 250}, {"DATA", 354}} {
		if code, msg, err := sc.Cmd(step.cmd, 10*time.Second); err != nil || code != step.want {
			t.Fatalf("SMTP %s: got %d %s (%v), want %d", step.cmd, code, msg, err, step.want)
		}
	}
	if err := sc.Write("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: drain\r\n\r\nfirst half\r\n", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	lc := DialLDAPS(t, d.Addr("ldaps").String(), tc)
	if code, err := lc.Bind("alice", ap.Secret, 10*time.Second); err != nil || code != 0 {
		t.Fatalf("LDAP bind: got result %d (%v), want 0", code, err)
	}
	waitSessions(t, d.Control(), "alice", 3)

	// SIGTERM: Serve drains with limits.shutdown_grace.
	t0 := time.Now()
	stop()
	if !waitFor(2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", imapAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}) {
		t.Fatal("the IMAPS listener still accepts 2s after the shutdown began")
	}
	imapDone, ldapDone := watchIMAPBye(ic), watchLDAPNotice(lc)

	if err := sc.Write("second half\r\n.\r\n", 5*time.Second); err != nil {
		t.Fatalf("SMTP: finishing DATA during the drain: %v", err)
	}
	code, msg, err := sc.Reply(10 * time.Second)
	dataAt := time.Since(t0)
	if err != nil || code != 250 {
		t.Errorf("SMTP end of DATA during the drain: got %d %s (%v) after %v, want 250", code, msg, err, dataAt)
	}
	if code, msg, err := sc.Cmd("QUIT", 5*time.Second); err != nil || code != 221 {
		t.Errorf("SMTP QUIT during the drain: got %d %s (%v), want 221", code, msg, err)
	}
	mctx, mcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer mcancel()
	if _, err := ups.Sink.WaitMessages(mctx, 1); err != nil {
		t.Errorf("the message finished during the drain did not arrive: %v", err)
	} else if body := ups.Sink.Body(0); !bytes.Contains(body, []byte("second half")) {
		t.Errorf("relayed message: got %q, want both halves", body)
	}

	imapRes, ldapRes := <-imapDone, <-ldapDone
	for _, r := range []struct {
		what string
		res  farewell
	}{{"IMAP `* BYE`", imapRes}, {"LDAP Notice of Disconnection", ldapRes}} {
		at := r.res.at.Sub(t0)
		switch {
		case !r.res.ok:
			t.Errorf("%s: not received (connection ended after %v with %v; saw %q)", r.what, at, r.res.err, r.res.saw)
		case at < opsGrace-200*time.Millisecond || at > opsGrace+3*time.Second:
			t.Errorf("%s after %v, want it once the grace (%v) is over", r.what, at, opsGrace)
		}
	}
	select {
	case <-served:
	case <-time.After(opsGrace + 5*time.Second):
		t.Fatalf("Serve still running %v after the shutdown began", time.Since(t0))
	}
	if serveErr != nil {
		t.Errorf("Serve after drain: got %v, want nil (exit 0)", serveErr)
	}
	stopped := time.Since(t0)
	t.Logf("drain: end of DATA 250 after %v, IMAP BYE after %v, LDAP notice after %v, Serve returned after %v (grace %v)",
		dataAt, imapRes.at.Sub(t0), ldapRes.at.Sub(t0), stopped, opsGrace)

	// The logins just before the shutdown were flushed: audit and last use.
	st, err := bolt.Open(context.Background(), bolt.Options{Path: filepath.Join(dir, "legate.db"),
		KeyFile: filepath.Join(dir, "hmac.key")})
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	defer st.Close()
	recs, err := st.AuditLog(context.Background(), store.AuditQuery{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	logins := map[string]int{}
	for _, r := range recs {
		if r.Action == "login" && r.Outcome == "allow" && r.AppPasswordID == ap.AppPassword.ID {
			logins[r.Protocol]++
		}
	}
	if want := map[string]int{"imap": 1, "smtp": 1, "ldap": 1}; !maps.Equal(logins, want) {
		t.Errorf("audit after the drain: allowed logins by protocol %v, want %v", logins, want)
	}
	aps, err := st.List(context.Background(), "alice")
	if err != nil || len(aps) != 1 {
		t.Fatalf("app passwords after the drain: %v, %d, want 1", err, len(aps))
	}
	if lu := aps[0].LastUse; lu.Time.IsZero() || lu.Protocol != "ldap" || lu.IP.String() != "127.0.0.1" {
		t.Errorf("last use after the drain: got %+v, want the LDAP bind from 127.0.0.1 (the last login)", lu)
	}
}

// writeDrainConfig writes a YAML file (the contract of docs/contract.md §8) for Legate
// in front of ups, with IMAPS, submissions and LDAPS on 127.0.0.1:0.
func writeDrainConfig(t *testing.T, dir string, certs *testenv.Certs, ups *Upstreams) string {
	t.Helper()
	dc, sl := ups.Dovecot, ups.Slapd
	mailPW := writeSecret(t, dir, "mail-master.secret", dc.MasterPassword)
	ldapPW := writeSecret(t, dir, "ldap.secret", sl.ServicePassword)
	mail := func(addr, mode string) string {
		return fmt.Sprintf("\n    address: %s\n    tls: %s\n    ca_file: %q\n    server_name: localhost\n"+
			"    master_user: %s\n    master_password_file: %q\n    login: authzid", addr, mode, dc.CAFile, dc.MasterUser, mailPW)
	}
	y := fmt.Sprintf(`listen:
  imaps: 127.0.0.1:0
  submissions: 127.0.0.1:0
  ldaps: 127.0.0.1:0
tls: {cert_file: %q, key_file: %q}
storage: {path: %q, key_file: %q}
upstream:
  imap:%s
  smtp:%s
  ldap:
    address: %s
    tls: implicit
    ca_file: %q
    server_name: localhost
    bind_dn: %q
    bind_password_file: %q
    pool_size: 4
    authz: proxied
directory:
  type: ldap
  ldap:
    base_dn: %q
    user_filter: "(uid=%%s)"
    name_attribute: uid
    mail_attributes: [mail]
    group_attribute: memberOf
    admin_groups: [%q]
    disabled_filter: "(pwdAccountLockedTime=*)"
    password_changed_attribute: pwdChangedTime
limits:
  shutdown_grace: %s
  dial_timeout: 3s
log:
  level: debug
`, certs.CertFile, certs.KeyFile, filepath.Join(dir, "legate.db"), filepath.Join(dir, "hmac.key"),
		mail(dc.IMAPSAddr, "implicit"), mail(dc.SubmissionAddr, "starttls"),
		sl.LDAPSAddr, sl.CAFile, sl.ServiceDN, ldapPW, "ou=people,"+sl.BaseDN, sl.GroupDN("admins"), opsGrace)
	p := filepath.Join(dir, "legate.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// farewell is how a held connection ended.
type farewell struct {
	ok  bool      // the protocol's goodbye arrived
	at  time.Time // when it (or the end of the connection) came
	err error     // how the connection ended without it
	saw string    // what came instead
}

// watchIMAPBye reads until `* BYE` or the end of the connection.
func watchIMAPBye(c *RawIMAP) <-chan farewell {
	ch := make(chan farewell, 1)
	go func() {
		var saw []string
		for {
			l, err := c.ReadLine(15 * time.Second)
			if err != nil {
				ch <- farewell{at: time.Now(), err: err, saw: strings.Join(saw, " | ")}
				return
			}
			if strings.HasPrefix(l, "* BYE") {
				ch <- farewell{ok: true, at: time.Now()}
				return
			}
			saw = append(saw, l)
		}
	}()
	return ch
}

// watchLDAPNotice reads until the Notice of Disconnection or the end of
// the connection.
func watchLDAPNotice(c *RawLDAP) <-chan farewell {
	ch := make(chan farewell, 1)
	go func() {
		var saw []string
		for {
			p, err := c.Read(15 * time.Second)
			if err != nil {
				ch <- farewell{at: time.Now(), err: err, saw: strings.Join(saw, " | ")}
				return
			}
			if NoticeOfDisconnection(p) {
				ch <- farewell{ok: true, at: time.Now()}
				return
			}
			saw = append(saw, fmt.Sprintf("message tag %d", p.Children[len(p.Children)-1].Tag))
		}
	}()
	return ch
}
