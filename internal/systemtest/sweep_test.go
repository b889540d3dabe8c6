package systemtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
)

// TestReloadClosesBlockedSessions (issue 17.2): a reload that blocks alice
// closes her live IMAP IDLE, SMTP and LDAP sessions within 2 s (real
// Dovecot and slapd), each with an audit record and a log line naming the
// rule; bob's session stays.
func TestReloadClosesBlockedSessions(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups})
	alice, bob := lg.CreateAppPassword(t, "alice", "Laptop"), lg.CreateAppPassword(t, "bob", "Laptop")
	tc := lg.ClientTLS()
	ai, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), tc)
	if ans, err := ai.Login("a", "alice", alice, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("alice IMAP LOGIN: got %q (%v), want OK", ans, err)
	}
	if ans, _, err := ai.Command("b", "SELECT INBOX", 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("alice IMAP SELECT: got %q (%v), want OK", ans, err)
	}
	fmt.Fprint(ai.Conn, "c IDLE\r\n")
	if l, err := ai.ReadLine(10 * time.Second); err != nil || !strings.HasPrefix(l, "+") {
		t.Fatalf("alice IMAP IDLE: got %q (%v), want a continuation", l, err)
	}
	as := DialSMTPS(t, lg.AddrOf(t, "submissions"), tc)
	as.Login(t, "alice", alice)
	al := DialLDAPS(t, lg.AddrOf(t, "ldaps"), tc)
	if code, err := al.Bind("alice", alice, 10*time.Second); err != nil || code != 0 {
		t.Fatalf("alice LDAP bind: got %d (%v), want 0", code, err)
	}
	bi, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), tc)
	if ans, err := bi.Login("a", "bob", bob, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("bob IMAP LOGIN: got %q (%v), want OK", ans, err)
	}
	waitSessions(t, lg.Control(), "alice", 3)
	waitSessions(t, lg.Control(), "bob", 1)

	ends := map[string]<-chan time.Time{"imap": watchEnd(ai.Conn), "smtp": watchEnd(as.Conn), "ldap": watchEnd(al.Conn)}
	next := *lg.Config
	next.Policy.BlockedUsers = []string{"alice"}
	t0 := time.Now()
	if err := lg.Reload(&next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, proto := range []string{"imap", "smtp", "ldap"} {
		if took := (<-ends[proto]).Sub(t0); took > 2*time.Second {
			t.Errorf("alice's %s session closed %v after the reload, want within 2s", proto, took)
		} else {
			t.Logf("alice's %s session closed %v after the reload", proto, took)
		}
	}
	if ans, _, err := bi.Command("n", "NOOP", 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Errorf("bob's IMAP session after the reload: NOOP got %q (%v), want OK", ans, err)
	}
	waitSessions(t, lg.Control(), "alice", 0)
	waitSessions(t, lg.Control(), "bob", 1)

	recs, err := lg.Control().Audit(context.Background(), control.AuditArgs{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	closed := map[string]bool{}
	upstreamOK := map[string]bool{}
	for _, r := range recs {
		if r.Action == "close" && r.Outcome == "sweep" && r.Rule == "user_blocked" {
			closed[r.Protocol] = true
		}
		if r.Action == "upstream" && r.Outcome == "ok" {
			upstreamOK[r.Protocol] = true
		}
	}
	for _, proto := range []string{"imap", "smtp", "ldap"} {
		if !closed[proto] {
			t.Errorf("no audit record close/sweep/user_blocked for alice's %s session", proto)
		}
		if !upstreamOK[proto] {
			t.Errorf("no audit record upstream/ok for alice's %s session", proto)
		}
	}
	if logs := lg.Logs.String(); strings.Count(logs, `msg="session closed" user=alice`) != 3 ||
		!strings.Contains(logs, "cause=sweep rule=user_blocked") {
		t.Errorf("want three log lines `session closed` for alice with cause=sweep rule=user_blocked:\n%s", tailLines(logs, 30))
	}
}

// slowProxy forwards TCP connections to target, holding back the
// upstream's first bytes for delay: a slow upstream login.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() {
				defer wg.Done()
				time.Sleep(delay)
				io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRevokeDuringSlowUpstreamLogin (issue 13.6): the session is registered
// before the upstream is dialled, so revoking the app password while the
// upstream login is still running closes the client and leaves no session.
func TestRevokeDuringSlowUpstreamLogin(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true})
	const delay = 2 * time.Second
	slow := slowProxy(t, ups.Dovecot.IMAPSAddr, delay)
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: func(cfg *config.Config) {
		cfg.Listen.LDAP, cfg.Listen.LDAPS = "", ""
		cfg.Upstream.LDAP = config.UpstreamLDAP{}
		cfg.Upstream.IMAP.Address = slow
		cfg.Limits.DialTimeout = config.Duration(10 * time.Second)
	}})
	pw := lg.CreateAppPassword(t, "alice", "Laptop")
	ic, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
	type answer struct {
		ans string
		err error
	}
	got := make(chan answer, 1)
	go func() {
		ans, err := ic.Login("a", "alice", pw, 15*time.Second)
		got <- answer{ans, err}
	}()
	waitSessions(t, lg.Control(), "alice", 1) // registered, upstream login running
	if s, _ := lg.Control().Sessions(context.Background(), "alice"); len(s) != 1 || !s[0].Pending {
		t.Fatalf("session during the upstream login: %+v, want one pending", s)
	}
	res, err := lg.Control().RevokeAppPasswords(context.Background(), control.RevokeArgs{User: "alice", All: true})
	if err != nil || res.SessionsClosed != 1 {
		t.Fatalf("revoke: %+v, %v; want one session closed", res, err)
	}
	a := <-got
	if strings.HasPrefix(a.ans, "OK") {
		t.Errorf("LOGIN answered %q after the revoke, want no OK", a.ans)
	}
	time.Sleep(delay) // past the slow upstream's answer
	waitSessions(t, lg.Control(), "alice", 0)
	recs, _ := lg.Control().Audit(context.Background(), control.AuditArgs{User: "alice"})
	var sawClose bool
	for _, r := range recs {
		if r.Action == "upstream" && r.Outcome == "ok" {
			t.Errorf("audit: upstream ok after the revoke: %+v", r)
		}
		sawClose = sawClose || (r.Action == "close" && r.Outcome == "revoke")
	}
	if !sawClose {
		t.Errorf("no audit record close/revoke among %d records", len(recs))
	}
}

// TestAuditUpstreamRefused (issue 17.7): a login Legate allows but the
// upstream refuses (here: a wrong master password for real Dovecot) is told
// apart from a working session in the audit log and in the report.
func TestAuditUpstreamRefused(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: func(cfg *config.Config) {
		cfg.Listen.LDAP, cfg.Listen.LDAPS = "", ""
		cfg.Upstream.LDAP = config.UpstreamLDAP{}
		cfg.Upstream.IMAP.MasterPasswordFile = writeSecret(t, t.TempDir(), "wrong.secret", "not-the-master-password")
	}})
	pw := lg.CreateAppPassword(t, "alice", "Laptop")
	ic, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
	if ans, err := ic.Login("a", "alice", pw, 10*time.Second); err != nil || strings.HasPrefix(ans, "OK") {
		t.Fatalf("LOGIN with the upstream refusing: got %q (%v), want a refusal", ans, err)
	}
	DialSMTPS(t, lg.AddrOf(t, "submissions"), lg.ClientTLS()).Login(t, "alice", pw) // works: SMTP upstream is fine
	ctx := context.Background()
	recs, err := lg.Control().Audit(ctx, control.AuditArgs{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, r := range recs {
		if r.Action == "login" || r.Action == "upstream" {
			seq = append(seq, r.Protocol+":"+r.Action+"/"+r.Outcome)
		}
	}
	want := []string{"imap:login/allow", "imap:upstream/error", "smtp:login/allow", "smtp:upstream/ok"}
	if strings.Join(seq, " ") != strings.Join(want, " ") {
		t.Errorf("audit: got %v, want %v", seq, want)
	}
	rep, err := lg.Control().Report(ctx, control.ReportArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Logins != 2 || rep.Rows[0].UpstreamFailures != 1 {
		t.Errorf("report rows: %+v, want one row with 2 logins and 1 upstream failure", rep.Rows)
	}
}

// TestCloseCausesLoggedAndAudited (issue 17.7): a session closed by an
// operator's kill and one still open when a drain's grace ends are both
// logged with their cause and audited.
func TestCloseCausesLoggedAndAudited(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: func(cfg *config.Config) {
		cfg.Listen.LDAP, cfg.Listen.LDAPS = "", ""
		cfg.Upstream.LDAP = config.UpstreamLDAP{}
	}})
	pw := lg.CreateAppPassword(t, "alice", "Laptop")
	login := func() *RawIMAP {
		c, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
		if ans, err := c.Login("a", "alice", pw, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
			t.Fatalf("LOGIN: got %q (%v), want OK", ans, err)
		}
		return c
	}
	killed := login()
	waitSessions(t, lg.Control(), "alice", 1)
	id := lg.Registry().List("alice")[0].ID
	if n := lg.Registry().KillID(id); n != 1 {
		t.Fatalf("KillID: %d", n)
	}
	<-watchEnd(killed.Conn)
	waitSessions(t, lg.Control(), "alice", 0)
	login()
	waitSessions(t, lg.Control(), "alice", 1)
	recs, err := lg.Control().Audit(context.Background(), control.AuditArgs{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var kill bool
	for _, r := range recs {
		kill = kill || (r.Action == "close" && r.Outcome == "kill")
	}
	if !kill {
		t.Error("no audit record close/kill")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := lg.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	logs := lg.Logs.String()
	for _, cause := range []string{"cause=kill", "cause=drain"} {
		if !strings.Contains(logs, `msg="session closed" user=alice proto=imap`) || !strings.Contains(logs, cause) {
			t.Errorf("no `session closed` log line with %s:\n%s", cause, tailLines(logs, 20))
		}
	}
}
