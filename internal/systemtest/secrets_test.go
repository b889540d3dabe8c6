package systemtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/go-ldap/ldap/v3"

	"github.com/legate-proxy/legate/internal/admin"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/store"
)

// recordingProxy forwards a unix socket to another and keeps every byte
// that passes in both directions.
type recordingProxy struct {
	ln  net.Listener
	buf SyncBuffer
	wg  sync.WaitGroup
}

func startRecordingProxy(t *testing.T, path, target string) *recordingProxy {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				u, err := net.Dial("unix", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{})
				go func() {
					io.Copy(io.MultiWriter(u, &p.buf), c)
					u.(*net.UnixConn).CloseWrite()
					close(done)
				}()
				io.Copy(io.MultiWriter(c, &p.buf), u)
				c.Close()
				<-done
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

// needles are every form in which a secret could leak.
func needles(secret string) []string {
	norm := store.Normalize(secret)
	forms := []string{secret, norm, strings.ToUpper(norm), strings.ToLower(secret)}
	enc := []func([]byte) string{base64.StdEncoding.EncodeToString, base64.RawStdEncoding.EncodeToString,
		base64.URLEncoding.EncodeToString, base64.RawURLEncoding.EncodeToString}
	blobs := []string{secret, norm}
	for _, authz := range []string{"", "alice", "legate"} {
		for _, authc := range []string{"alice", "legate"} {
			blobs = append(blobs, authz+"\x00"+authc+"\x00"+secret)
		}
	}
	for _, b := range blobs {
		for _, e := range enc {
			forms = append(forms, e([]byte(b)))
		}
	}
	return forms
}

// TestSecretsNeverLogged runs full logins on IMAP, SMTP and LDAP through the
// daemon to real Dovecot, smtp-sink and slapd, plus failures with the master
// credentials as passwords, then looks for the secrets in every log line,
// audit record, client-visible error and admin-socket byte.
func TestSecretsNeverLogged(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Admin: true})
	pw := lg.CreateAppPassword(t, "alice", "Laptop")
	dc, sl := ups.Dovecot, ups.Slapd
	secrets := map[string]string{"app password": pw, "dovecot master password": dc.MasterPassword,
		"ldap service password": sl.ServicePassword, "alice's upstream password": dc.Users["alice"]}
	var (
		seen   []string // every error text a client saw
		seenMu sync.Mutex
		fails  sync.WaitGroup
	)
	saw := func(what string, err error) {
		seenMu.Lock()
		defer seenMu.Unlock()
		if err != nil {
			seen = append(seen, what+": "+err.Error())
		}
	}
	// Failed logins run concurrently: one after another, the throttle's
	// backoff from 127.0.0.1 would make the test wait for seconds.
	fail := func(f func()) {
		fails.Add(1)
		go func() {
			defer fails.Done()
			f()
		}()
	}
	tc := lg.ClientTLS()

	// IMAP: LOGIN over implicit TLS, AUTHENTICATE PLAIN after STARTTLS.
	held, err := imapclient.DialTLS(lg.AddrOf(t, "imaps"), &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := held.Login("alice", pw).Wait(); err != nil {
		t.Fatalf("IMAP LOGIN with app password: %v", err)
	}
	if _, err := held.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("IMAP SELECT: %v", err)
	}
	c2, err := imapclient.DialStartTLS(lg.AddrOf(t, "imap"), &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Authenticate(sasl.NewPlainClient("", "alice", pw)); err != nil {
		t.Fatalf("IMAP AUTHENTICATE PLAIN: %v", err)
	}
	c2.Logout().Wait()
	for _, bad := range []struct{ user, pw string }{
		{"alice", dc.MasterPassword}, {"alice*legate", dc.MasterPassword}, {"legate", dc.MasterPassword},
		{"alice", dc.Users["alice"]}, {"alice", strings.ToLower(pw) + "x"},
	} {
		imaps := lg.AddrOf(t, "imaps")
		fail(func() {
			c, err := imapclient.DialTLS(imaps, &imapclient.Options{TLSConfig: tc})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			err = c.Login(bad.user, bad.pw).Wait()
			if err == nil {
				t.Errorf("IMAP LOGIN %s with a non-app password: succeeded", bad.user)
			}
			saw("imap login "+bad.user, err)
		})
	}

	// SMTP: AUTH PLAIN after STARTTLS and on submissions, a message relayed.
	sc, err := smtp.DialStartTLS(lg.AddrOf(t, "submission"), tc)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(sasl.NewPlainClient("", "alice", pw)); err != nil {
		t.Fatalf("SMTP AUTH: %v", err)
	}
	msg := "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: secrets test\r\n\r\nhello\r\n"
	if err := sc.SendMail("alice@example.com", []string{"bob@example.com"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("SMTP send: %v", err)
	}
	sc.Quit()
	for _, bad := range []string{dc.MasterPassword, dc.Users["alice"]} {
		subs := lg.AddrOf(t, "submissions")
		fail(func() {
			sc, err := smtp.DialTLS(subs, tc)
			if err != nil {
				t.Error(err)
				return
			}
			defer sc.Close()
			err = sc.Auth(sasl.NewPlainClient("", "alice", bad))
			if err == nil {
				t.Error("SMTP AUTH with a non-app password: succeeded")
			}
			saw("smtp auth", err)
		})
	}

	// LDAP: bind over LDAPS and over StartTLS, a search, failures.
	lc, err := ldap.DialURL("ldaps://"+lg.AddrOf(t, "ldaps"), ldap.DialWithTLSConfig(tc))
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.Bind("alice", pw); err != nil {
		t.Fatalf("LDAP bind: %v", err)
	}
	sr, err := lc.Search(ldap.NewSearchRequest("ou=people,"+sl.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 10, false, "(uid=bob)", []string{"mail"}, nil))
	if err != nil || len(sr.Entries) != 1 {
		t.Fatalf("LDAP search: %v, %d entries", err, len(sr.Entries))
	}
	lc.Close()
	for _, bad := range []struct{ dn, pw string }{{"alice", sl.ServicePassword}, {sl.ServiceDN, sl.ServicePassword}, {"alice", sl.Users["alice"]}} {
		url := "ldap://" + lg.AddrOf(t, "ldap")
		fail(func() {
			lc, err := ldap.DialURL(url)
			if err != nil {
				t.Error(err)
				return
			}
			defer lc.Close()
			if err := lc.StartTLS(tc); err != nil {
				t.Error(err)
				return
			}
			err = lc.Bind(bad.dn, bad.pw)
			if err == nil {
				t.Errorf("LDAP bind %s with a service password: succeeded", bad.dn)
			}
			saw("ldap bind "+bad.dn, err)
		})
	}
	fails.Wait()

	// Admin socket: what `apppass list`, `audit --json`, `sessions --json`
	// and `report --json` receive, recorded on the way.
	rec := startRecordingProxy(t, filepath.Join(lg.Dir, "rec.sock"), lg.AdminSocket)
	cl := &admin.Client{Path: filepath.Join(lg.Dir, "rec.sock")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if l, err := cl.ListAppPasswords(ctx, "alice"); err != nil || len(l) != 1 {
		t.Errorf("admin list: %v, %d entries, want 1", err, len(l))
	}
	auditRecs, err := cl.Audit(ctx, control.AuditArgs{})
	if err != nil {
		t.Fatalf("admin audit: %v", err)
	}
	if s, err := cl.Sessions(ctx, ""); err != nil || len(s) == 0 {
		t.Errorf("admin sessions: %v, %d sessions, want at least the held IMAP session", err, len(s))
	}
	if _, err := cl.Report(ctx, control.ReportArgs{}); err != nil {
		t.Errorf("admin report: %v", err)
	}
	held.Logout().Wait()
	// Every login decision is in the audit log (and there are many).
	var logins int
	for _, r := range auditRecs {
		if r.Action == "login" {
			logins++
		}
	}
	if logins < 12 {
		t.Errorf("audit holds %d login records, want at least 12", logins)
	}
	// The store, read directly (not over the socket).
	direct, err := lg.Auth().Store().AuditLog(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	auditJSON, _ := json.Marshal(direct)

	haystacks := map[string]string{
		"daemon log":          lg.Logs.String(),
		"audit records":       string(auditJSON),
		"client-visible text": strings.Join(seen, "\n"),
		"admin socket":        rec.buf.String(),
	}
	if len(seen) < 10 {
		t.Errorf("collected %d client errors, want 10", len(seen))
	}
	for hay, text := range haystacks {
		if len(text) == 0 {
			t.Errorf("%s: nothing captured", hay)
		}
		for what, secret := range secrets {
			for _, n := range needles(secret) {
				if i := strings.Index(text, n); i >= 0 {
					t.Errorf("%s contains the %s (as %q) at byte %d: ...%s...", hay, what, n, i, text[max(0, i-80):min(len(text), i+len(n)+20)])
				}
			}
		}
	}
	t.Logf("searched %d bytes of log, %d audit records, %d client errors, %d admin-socket bytes",
		len(haystacks["daemon log"]), len(direct), len(seen), len(haystacks["admin socket"]))
}
