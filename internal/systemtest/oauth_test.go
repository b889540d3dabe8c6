package systemtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/testenv/oauthserver"
)

// grantCheck is a Dovecot checkpassword program imitating Exchange
// Online's app-only model: the token (handed over as the password) is
// introspected, and its app must hold a grant for the mailbox, as
// Add-MailboxPermission gives one.
const grantCheck = `#!/usr/bin/python3
import base64, json, os, sys, urllib.parse, urllib.request
INTROSPECT, AUTH, GRANTS = sys.argv[1], sys.argv[2], sys.argv[3]
reply = sys.argv[4:]
data = b""
while True:
    b = os.read(3, 1024)
    if not b:
        break
    data += b
parts = data.split(b"\0")
user, token = parts[0].decode(), parts[1].decode()
req = urllib.request.Request(INTROSPECT, data=urllib.parse.urlencode({"token": token}).encode(),
    headers={"Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode(),
             "Content-Type": "application/x-www-form-urlencoded"})
try:
    info = json.load(urllib.request.urlopen(req, timeout=5))
except Exception:
    sys.exit(111)
grants = json.load(open(GRANTS))
if not info.get("active") or user not in grants.get(info.get("client_id", ""), []):
    sys.exit(1)
os.environ["USER"] = user
os.execv(reply[0], reply)
`

// oauthMail starts the token server, smtp-sink and a Dovecot that takes
// tokens: per-user tokens through passdb oauth2 (introspection), or
// app-only tokens through the grant-table checkpassword.
func oauthMail(t *testing.T, appOnly bool) (*oauthserver.Server, *Upstreams) {
	t.Helper()
	testenv.Require(t, "dovecot", "smtp-sink", "python3")
	srv := oauthserver.Start(t, oauthserver.Options{})
	srv.AddResourceServer("mail", "mail-secret")
	opts := testenv.DovecotOptions{Submission: true}
	sink := testenv.StartSink(t)
	opts.RelayAddr = sink.Addr
	if appOnly {
		dir := testenv.TempDir(t)
		script := filepath.Join(dir, "grant-check.py")
		grants := filepath.Join(dir, "grants.json")
		if err := os.WriteFile(script, []byte(grantCheck), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(grants, []byte(`{"printer-app": ["alice@example.com"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		opts.OAuth2Checkpassword = strings.Join([]string{script, srv.IntrospectionURL, "mail:mail-secret", grants}, " ")
	} else {
		u, _ := url.Parse(srv.IntrospectionURL)
		u.User = url.UserPassword("mail", "mail-secret")
		opts.OAuth2Introspection = u.String()
	}
	dc := testenv.StartDovecot(t, opts)
	return srv, &Upstreams{Dovecot: dc, Sink: sink}
}

// useOAuth switches Legate's IMAP and SMTP upstreams to token logins.
func useOAuth(dir string, o config.OAuth2) func(cfg *config.Config) {
	return func(cfg *config.Config) {
		for _, u := range []*config.UpstreamMail{&cfg.Upstream.IMAP, &cfg.Upstream.SMTP} {
			u.Auth, u.MasterUser, u.MasterPasswordFile = config.AuthOAuth2, "", ""
			u.OAuth2 = o
		}
		cfg.Listen.HTTP = "127.0.0.1:0"
	}
}

// imapRoundTrip logs in through Legate with an app password, appends a
// message and fetches it back byte for byte.
func imapRoundTrip(t *testing.T, lg *Legate, user, pass string) {
	t.Helper()
	c, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
	if ans, err := c.Login("a1", user, pass, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("login %s: %q %v", user, ans, err)
	}
	if ans, _, err := c.Command("a2", `LIST "" "*"`, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("LIST: %q %v", ans, err)
	}
	msg := "From: " + user + "@example.com\r\nSubject: token login\r\n\r\nbody \x01 bytes\r\n"
	if _, err := fmt.Fprintf(c.Conn, "a3 APPEND INBOX {%d}\r\n", len(msg)); err != nil {
		t.Fatal(err)
	}
	if l, err := c.ReadLine(10 * time.Second); err != nil || !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND continuation: %q %v", l, err)
	}
	if _, err := io.WriteString(c.Conn, msg+"\r\n"); err != nil {
		t.Fatal(err)
	}
	for {
		l, err := c.ReadLine(10 * time.Second)
		if err != nil {
			t.Fatalf("APPEND: %v", err)
		}
		if strings.HasPrefix(l, "a3 ") {
			if !strings.HasPrefix(l, "a3 OK") {
				t.Fatalf("APPEND: %q", l)
			}
			break
		}
	}
	if ans, _, err := c.Command("a4", "SELECT INBOX", 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("SELECT: %q %v", ans, err)
	}
	if _, err := fmt.Fprintf(c.Conn, "a5 FETCH 1 BODY.PEEK[]\r\n"); err != nil {
		t.Fatal(err)
	}
	l, err := c.ReadLine(10 * time.Second)
	if err != nil || !strings.Contains(l, fmt.Sprintf("{%d}", len(msg))) {
		t.Fatalf("FETCH: %q %v", l, err)
	}
	got := make([]byte, len(msg))
	_ = c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c.r, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("FETCH body %q, want %q", got, msg)
	}
}

// smtpRoundTrip submits a message through Legate's submissions listener
// and waits until smtp-sink has it (Dovecot submission relays it there
// after Legate logged in upstream with a token).
func smtpRoundTrip(t *testing.T, lg *Legate, ups *Upstreams, user, from, pass string) {
	t.Helper()
	before := len(ups.Sink.Messages())
	c := DialSMTPS(t, lg.AddrOf(t, "submissions"), lg.ClientTLS())
	c.Login(t, user, pass)
	for _, step := range []struct {
		line string
		code int
	}{{"MAIL FROM:<" + from + ">", 250}, {"RCPT TO:<carol@example.net>", 250}, {"DATA", 354}} {
		if code, msg, err := c.Cmd(step.line, 15*time.Second); err != nil || code != step.code {
			t.Fatalf("%s: %d %s (%v), want %d", step.line, code, msg, err, step.code)
		}
	}
	if code, msg, err := c.Cmd("Subject: via token\r\n\r\nhello\r\n.", 15*time.Second); err != nil || code != 250 {
		t.Fatalf("end of DATA: %d %s (%v), want 250", code, msg, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	msgs, err := ups.Sink.WaitMessages(ctx, before+1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msgs[len(msgs)-1]), "via token") {
		t.Errorf("the sink got %q", msgs[len(msgs)-1])
	}
}

func readyz(t *testing.T, lg *Legate) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + lg.HTTPAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Google's model: a service account with domain-wide delegation gets a
// token per user (sub = the mailbox); Dovecot introspects it.
func TestOAuthJWTBearerPerUser(t *testing.T) {
	srv, ups := oauthMail(t, false)
	dir := t.TempDir()
	sa := srv.AddServiceAccount(t, "legate@project.example", func(sub string) bool { return sub != "bob@example.com" })
	saPath := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(saPath, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: useOAuth(dir, config.OAuth2{
		Provider: config.ProviderGeneric, Mechanism: config.MechOAUTHBEARER, Grant: config.GrantJWTBearer,
		TokenURL: srv.TokenURL, ServiceAccountFile: saPath, Audience: srv.Issuer, Scope: "https://mail.google.com/",
		MailboxAttribute: config.MailboxMail,
	})})
	alice := lg.CreateAppPassword(t, "alice", "phone")
	imapRoundTrip(t, lg, "alice", alice)
	if n := srv.Issued("legate@project.example", "alice@example.com"); n != 1 {
		t.Errorf("%d tokens for alice, want 1", n)
	}
	// Submission: Dovecot submission takes the same token (OAUTHBEARER).
	smtpRoundTrip(t, lg, ups, "alice", "alice@example.com", alice)
	if n := srv.Issued("legate@project.example", "alice@example.com"); n != 2 {
		t.Errorf("%d tokens for alice after IMAP and SMTP, want 2 (one per upstream's cache)", n)
	}
	// Outside the delegation: the client gets UNAVAILABLE, the operator a
	// log line naming the token source.
	bob := lg.CreateAppPassword(t, "bob", "phone")
	c, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
	ans, err := c.Login("b1", "bob", bob, 10*time.Second)
	if err != nil || !strings.HasPrefix(ans, "NO [UNAVAILABLE]") {
		t.Fatalf("bob: %q %v, want NO [UNAVAILABLE]", ans, err)
	}
	if logs := lg.Logs.String(); !strings.Contains(logs, "upstream.imap token") {
		t.Errorf("no log line naming the token source; logs:\n%s", tailLines(logs, 20))
	}
	if strings.Contains(lg.Logs.String(), bob) {
		t.Error("the app password reached the log")
	}
}

// 200 logins for 50 users at once: one token request per user.
func TestOAuthConcurrentLoginsOneTokenPerUser(t *testing.T) {
	srv, ups := oauthMail(t, false)
	dir := t.TempDir()
	sa := srv.AddServiceAccount(t, "legate@project.example", func(string) bool { return true })
	saPath := filepath.Join(dir, "sa.json")
	os.WriteFile(saPath, sa, 0o600)
	users := make([]config.User, 50)
	for i := range users {
		users[i] = config.User{Name: fmt.Sprintf("u%02d", i), Addresses: []string{fmt.Sprintf("u%02d@example.com", i)}}
	}
	mut := useOAuth(dir, config.OAuth2{Provider: config.ProviderGeneric, Mechanism: config.MechXOAUTH2,
		Grant: config.GrantJWTBearer, TokenURL: srv.TokenURL, ServiceAccountFile: saPath, Audience: srv.Issuer,
		MailboxAttribute: config.MailboxMail})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: func(cfg *config.Config) {
		mut(cfg)
		cfg.Directory.Static.Users = users
		cfg.Limits.MaxConnectionsPerIP = 500
		cfg.Limits.DialTimeout = config.Duration(30 * time.Second) // a loaded 2-core machine
	}})
	pw := make([]string, len(users))
	for i, u := range users {
		pw[i] = lg.CreateAppPassword(t, u.Name, "dev")
	}
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	// 20 at a time, four logins per user in a row: each user's logins
	// overlap, so a cache without single flight would ask more than once.
	sem := make(chan struct{}, 20)
	for i := range 200 {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			u := i / 4
			c, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
			defer c.Conn.Close()
			if ans, err := c.Login("a", users[u].Name, pw[u], 30*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
				errs <- fmt.Sprintf("%s: %q %v", users[u].Name, ans, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, u := range users {
		if n := srv.Issued("legate@project.example", u.Addresses[0]); n != 1 {
			t.Errorf("%s: %d token requests, want 1", u.Name, n)
		}
	}
}

// Microsoft's model: one app-only token (client credentials); the mailbox
// must be granted to the app. Short-lived tokens refresh unnoticed; with
// the token endpoint down, the cached token serves until it expires; a
// revoked secret shows in /readyz.
func TestOAuthClientCredentialsAppOnly(t *testing.T) {
	srv, ups := oauthMail(t, true)
	srv.AddApp("printer-app", "app-secret")
	srv.SetTokenLifetime(6 * time.Second) // expires_in 5: refreshed after 4 s
	dir := t.TempDir()
	secret := filepath.Join(dir, "oauth.secret")
	os.WriteFile(secret, []byte("app-secret\n"), 0o600)
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: useOAuth(dir, config.OAuth2{
		Provider: config.ProviderGeneric, Mechanism: config.MechXOAUTH2, Grant: config.GrantClientCredentials,
		TokenURL: srv.TokenURL, ClientID: "printer-app", ClientSecretFile: secret, Scope: "imap",
		MailboxAttribute: config.MailboxMail,
	})})
	alice := lg.CreateAppPassword(t, "alice", "printer")
	imapRoundTrip(t, lg, "alice", alice)
	smtpRoundTrip(t, lg, ups, "alice", "alice@example.com", alice)
	// (upstream.ldap points nowhere in these tests, so /readyz is 503
	// anyway; only the token source's line matters.)
	if _, body := readyz(t, lg); strings.Contains(body, "oauth2") {
		t.Fatalf("readyz names the token source while it works: %s", body)
	}

	// No grant for bob's mailbox: refused, with the likely cause logged.
	bob := lg.CreateAppPassword(t, "bob", "printer")
	c, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
	if ans, err := c.Login("b1", "bob", bob, 10*time.Second); err != nil || !strings.HasPrefix(ans, "NO [UNAVAILABLE]") {
		t.Fatalf("bob without a grant: %q %v, want NO [UNAVAILABLE]", ans, err)
	}
	if !strings.Contains(lg.Logs.String(), "Add-MailboxPermission") {
		t.Errorf("no operator hint for the refused token; logs:\n%s", tailLines(lg.Logs.String(), 20))
	}

	// Logins over 9 s: the token is refreshed, no login notices.
	login := func() string {
		c, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
		defer c.Conn.Close()
		ans, err := c.Login("a", "alice", alice, 10*time.Second)
		if err != nil {
			return err.Error()
		}
		return ans
	}
	for range 6 {
		if ans := login(); !strings.HasPrefix(ans, "OK") {
			t.Fatalf("login during refresh: %q", ans)
		}
		time.Sleep(1500 * time.Millisecond)
	}
	if n := srv.Issued("printer-app", "printer-app"); n < 2 {
		t.Errorf("%d token requests over 9 s of 5-second tokens, want a refresh", n)
	}

	// Wait for a fresh token (the next refresh), then take the token
	// endpoint down: the cached token still works...
	fresh := srv.Issued("printer-app", "printer-app")
	for deadline := time.Now().Add(10 * time.Second); srv.Issued("printer-app", "printer-app") == fresh; {
		if time.Now().After(deadline) {
			t.Fatal("no token refresh within 10 s")
		}
		if ans := login(); !strings.HasPrefix(ans, "OK") {
			t.Fatalf("login: %q", ans)
		}
		time.Sleep(300 * time.Millisecond)
	}
	before := srv.Issued("printer-app", "printer-app")
	srv.SetTokenEndpointDown(true)
	if ans := login(); !strings.HasPrefix(ans, "OK") {
		t.Fatalf("login with the endpoint down and a cached token: %q", ans)
	}
	// ...until it expires.
	time.Sleep(6 * time.Second)
	if ans := login(); !strings.HasPrefix(ans, "NO [UNAVAILABLE]") {
		t.Fatalf("login with the endpoint down after expiry: %q, want NO [UNAVAILABLE]", ans)
	}
	if code, body := readyz(t, lg); code == http.StatusOK || !strings.Contains(body, "upstream.imap.oauth2") {
		t.Errorf("readyz with the endpoint down: %d %q, want the token source named", code, body)
	}
	// A revoked secret: readyz names the token source and the cause.
	srv.SetTokenEndpointDown(false)
	srv.SetSecret("printer-app", "rotated")
	if code, body := readyz(t, lg); code == http.StatusOK || !strings.Contains(body, "upstream.imap.oauth2") || !strings.Contains(body, "invalid_client") {
		t.Errorf("readyz with a revoked secret: %d %q", code, body)
	}
	if srv.Issued("printer-app", "printer-app") != before {
		t.Errorf("tokens issued while the endpoint was down or the secret revoked")
	}
	_ = context.Background
}
