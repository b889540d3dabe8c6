package systemtest

// End-to-end tests of operating Legate (docs/contract.md §6): draining on shutdown,
// the legacy-client report, killing a user's sessions, /readyz and
// /metrics, all in front of the real upstreams and with real clients.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/legate-proxy/legate/internal/cli"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/testenv"
)

// TestOpsReport logs in the way legacy clients do — python imaplib with an
// IMAP ID first, curl over IMAPS, swaks over submissions with its own EHLO
// name, ldapsearch with -y — and checks that `legate report` (the control
// call and the CLI through the admin socket) lists them per app password,
// with an unused app password under never_used.
func TestOpsReport(t *testing.T) {
	testenv.Require(t, "python3", "curl", "swaks", "ldapsearch")
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Admin: true})
	ctx := context.Background()
	used, err := lg.Control().CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "Thunderbird", Via: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	unused, err := lg.Control().CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "Old phone", Via: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	ca, dir := lg.Certs.CAFile, t.TempDir()
	port := func(key string) string { _, p, _ := net.SplitHostPort(lg.AddrOf(t, key)); return p }
	run := func(name string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	secret := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// IMAP ID, then LOGIN (imaplib has no id(): the command is sent raw).
	const py = `import imaplib, os, ssl, sys
imaplib.Commands["ID"] = ("NONAUTH", "AUTH", "SELECTED")
ctx = ssl.create_default_context(cafile=os.environ["LEGATE_CA"])
M = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["LEGATE_PORT"]), ssl_context=ctx)
typ, data = M._simple_command("ID", '("name" "Thunderbird" "version" "115.1")')
if typ != "OK":
    sys.exit("ID: %s %s" % (typ, data))
M.login("alice", os.environ["LEGATE_PW"])
typ, _ = M.select("INBOX")
if typ != "OK":
    sys.exit("SELECT: " + typ)
M.logout()
`
	run("python3", []string{"LEGATE_CA=" + ca, "LEGATE_PORT=" + port("imaps"), "LEGATE_PW=" + used.Secret}, "-c", py)
	netrc := secret("netrc", "machine 127.0.0.1 login alice password "+used.Secret+"\n")
	if out := run("curl", nil, "-sS", "--fail", "--max-time", "20", "--cacert", ca, "--netrc-file", netrc,
		"imaps://127.0.0.1:"+port("imaps")+"/"); !strings.Contains(out, "INBOX") {
		t.Errorf("curl LIST over IMAPS: got %q, want INBOX", out)
	}
	run("swaks", []string{"SWAKS_OPT_auth_password=" + used.Secret}, "--server", "127.0.0.1", "--port", port("submissions"),
		"--tls-on-connect", "--tls-verify", "--tls-ca-path", ca, "--ehlo", "legacy-scanner.example",
		"--auth", "PLAIN", "--auth-user", "alice", "--from", "alice@example.com", "--to", "bob@example.com",
		"--header", "Subject: scan", "--body", "scanned page")
	pwFile := secret("ldap.pw", used.Secret) // -y sends the file as it is: no newline
	if out := run("ldapsearch", []string{"LDAPTLS_CACERT=" + ca, "LDAPTLS_REQCERT=demand"},
		"-LLL", "-x", "-H", "ldaps://127.0.0.1:"+port("ldaps"), "-D", "alice", "-y", pwFile,
		"-b", "ou=people,"+ups.Slapd.BaseDN, "(uid=bob)", "mail"); !strings.Contains(out, "mail: bob@") {
		t.Errorf("ldapsearch: got %q, want bob's mail", out)
	}

	rep, err := lg.Control().Report(ctx, control.ReportArgs{})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "control.Report", rep, used.AppPassword.ID, unused.AppPassword.ID)
	var cliRep control.Report
	out := runCLI(t, lg, "report", "--json")
	if err := json.Unmarshal([]byte(out), &cliRep); err != nil {
		t.Fatalf("legate report --json: %v\n%s", err, out)
	}
	checkReport(t, "legate report --json", cliRep, used.AppPassword.ID, unused.AppPassword.ID)
}

// checkReport checks the inventory after the four logins of TestOpsReport.
func checkReport(t *testing.T, src string, rep control.Report, usedID, unusedID string) {
	t.Helper()
	var row *control.ReportRow
	for i := range rep.Rows {
		if rep.Rows[i].AppPasswordID == usedID {
			row = &rep.Rows[i]
		}
	}
	if row == nil {
		t.Fatalf("%s: no row for app password %s: %+v", src, usedID, rep.Rows)
	}
	protos := slices.Sorted(slices.Values(row.Protocols))
	if row.User != "alice" || row.Name != "Thunderbird" || !slices.Equal(protos, []string{"imap", "ldap", "smtp"}) ||
		row.IPs != 1 || row.LastIP != "127.0.0.1" || row.Logins != 4 {
		t.Errorf("%s: got row %+v, want alice/Thunderbird, protocols imap smtp ldap, 1 IP, last 127.0.0.1, 4 logins", src, *row)
	}
	t.Logf("%s: %+v; never used: %+v", src, *row, rep.NeverUsed)
	for _, want := range []string{"Thunderbird/115.1", "legacy-scanner.example"} {
		if !slices.ContainsFunc(row.Clients, func(c string) bool { return strings.Contains(c, want) }) {
			t.Errorf("%s: clients %q, want one naming %q", src, row.Clients, want)
		}
	}
	never := func(id string) bool {
		return slices.ContainsFunc(rep.NeverUsed, func(u control.ReportUnused) bool { return u.AppPasswordID == id })
	}
	if !never(unusedID) || never(usedID) {
		t.Errorf("%s: never_used %+v, want %s (Old phone) and not %s", src, rep.NeverUsed, unusedID, usedID)
	}
}

// TestOpsKillSessionsByUser holds alice's IMAP (IDLE), SMTP (authenticated,
// between transactions) and LDAP (bound) sessions and bob's IMAP session;
// `legate sessions kill --user alice` through the admin socket closes
// alice's three within a second and leaves bob's alone.
func TestOpsKillSessionsByUser(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Admin: true})
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
	t0 := time.Now()
	out := runCLI(t, lg, "sessions", "kill", "--user", "alice", "--json")
	var res struct{ Closed int }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Closed != 3 {
		t.Errorf("legate sessions kill --user alice --json: got %q (%v), want closed 3", out, err)
	}
	for _, proto := range []string{"imap", "smtp", "ldap"} {
		if took := (<-ends[proto]).Sub(t0); took > time.Second {
			t.Errorf("alice's %s session closed %v after the kill, want within 1s", proto, took)
		} else {
			t.Logf("alice's %s session closed %v after the kill", proto, took)
		}
	}
	if ans, _, err := bi.Command("n", "NOOP", 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Errorf("bob's IMAP session after killing alice's: NOOP got %q (%v), want OK", ans, err)
	}
	waitSessions(t, lg.Control(), "alice", 0)
	waitSessions(t, lg.Control(), "bob", 1)
}

// TestOpsReadyzDovecot: /readyz follows the real Dovecot — 200 while it
// runs, 503 naming the mail upstreams while it is stopped, 200 again after
// it is back.
func TestOpsReadyzDovecot(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: func(cfg *config.Config) {
		cfg.Listen.HTTP = "127.0.0.1:0"
		cfg.Listen.LDAP, cfg.Listen.LDAPS = "", "" // no slapd here
		cfg.Upstream.LDAP = config.UpstreamLDAP{}
	}})
	url := "http://" + lg.HTTPAddr().String() + "/readyz"
	readyz := func() (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET /readyz: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz with Dovecot up: got %d %q, want 200", code, body)
	}
	ups.Dovecot.Stop()
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "upstream.imap") || !strings.Contains(body, "upstream.smtp") {
		t.Errorf("/readyz with Dovecot stopped: got %d %q, want 503 naming upstream.imap and upstream.smtp", code, body)
	}
	ups.Dovecot.Start()
	t0 := time.Now()
	if !waitFor(15*time.Second, func() bool { code, body = readyz(); return code == http.StatusOK }) {
		t.Fatalf("/readyz 15s after Dovecot restarted: got %d %q, want 200", code, body)
	}
	t.Logf("/readyz back to 200 %v after Dovecot.Start returned", time.Since(t0))
}

// TestOpsMetricsAfterLogins scrapes /metrics after one real login per
// protocol and one bad password.
func TestOpsMetricsAfterLogins(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: func(cfg *config.Config) { cfg.Listen.HTTP = "127.0.0.1:0" }})
	pw := lg.CreateAppPassword(t, "alice", "Laptop")
	tc := lg.ClientTLS()
	ic, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), tc)
	if ans, err := ic.Login("a", "alice", pw, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("IMAP LOGIN: got %q (%v), want OK", ans, err)
	}
	bad, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), tc)
	if ans, err := bad.Login("a", "alice", "AAAA-BBBB-CCCC-DDDD", 10*time.Second); err != nil || !strings.Contains(ans, "AUTHENTICATIONFAILED") {
		t.Fatalf("IMAP LOGIN with a wrong password: got %q (%v), want NO [AUTHENTICATIONFAILED]", ans, err)
	}
	DialSMTPS(t, lg.AddrOf(t, "submissions"), tc).Login(t, "alice", pw)
	if code, err := DialLDAPS(t, lg.AddrOf(t, "ldaps"), tc).Bind("alice", pw, 10*time.Second); err != nil || code != 0 {
		t.Fatalf("LDAP bind: got %d (%v), want 0", code, err)
	}

	resp, err := http.Get("http://" + lg.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	got := map[string]float64{} // "protocol outcome", summed over rule
	if fam := fams["legate_logins_total"]; fam != nil {
		for _, m := range fam.GetMetric() {
			lab := map[string]string{}
			for _, l := range m.GetLabel() {
				lab[l.GetName()] = l.GetValue()
			}
			got[lab["protocol"]+" "+lab["outcome"]] += m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"imap allow": 1, "smtp allow": 1, "ldap allow": 1, "imap bad_credentials": 1}
	if !maps.Equal(got, want) {
		t.Errorf("legate_logins_total by protocol and outcome: got %v, want %v", got, want)
	}
}

// watchEnd reads until the connection ends and reports when.
func watchEnd(c net.Conn) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 512)
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				ch <- time.Now()
				return
			}
		}
	}()
	return ch
}

// waitSessions waits until user has n live sessions.
func waitSessions(t *testing.T, ctl *control.Service, user string, n int) {
	t.Helper()
	var got int
	if !waitFor(5*time.Second, func() bool {
		s, err := ctl.Sessions(context.Background(), user)
		got = len(s)
		return err == nil && got == n
	}) {
		t.Fatalf("live sessions of %s: got %d, want %d", user, got, n)
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCLI runs `legate ARGS` in-process against lg's admin socket and
// returns its standard output; it fails the test on a non-zero exit.
func runCLI(t *testing.T, lg *Legate, args ...string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "cli.yaml")
	y := fmt.Sprintf("listen: {admin: %q}\nstorage: {path: %q}\ndirectory:\n  type: static\n  static: {users: [{name: alice}]}\n",
		lg.AdminSocket, filepath.Join(filepath.Dir(cfg), "unused.db"))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if code := cli.Run(ctx, append(args, "--config", cfg), cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}); code != 0 {
		t.Fatalf("legate %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}
