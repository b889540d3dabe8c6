package smtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
)

// e2e is the proxy in front of a real Dovecot submission server relaying
// to smtp-sink.
type e2e struct {
	*env
	sink *testenv.Sink
	dc   *testenv.Dovecot
}

func newE2E(t *testing.T, mod ...func(*testenv.DovecotOptions)) *e2e {
	t.Helper()
	sink := testenv.StartSink(t)
	do := testenv.DovecotOptions{Submission: true, RelayAddr: sink.Addr}
	for _, m := range mod {
		m(&do)
	}
	dc := testenv.StartDovecot(t, do)
	tc, err := upstream.ClientTLS(dc.CAFile, "localhost", false)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		o.Upstream = &upstream.Config{Address: dc.SubmissionAddr, Mode: upstream.ModeSTARTTLS, TLS: tc,
			MasterUser: dc.MasterUser, MasterPassword: dc.MasterPassword,
			DialTimeout: 5 * time.Second, IOTimeout: 30 * time.Second}
	})
	return &e2e{env: e, sink: sink, dc: dc}
}

func testMessage(tag string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Alice <alice@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n", tag, tag)
	fmt.Fprintf(&b, "Hello from %s.\r\n.A line that starts with a dot.\r\n..two dots\r\nUTF-8 8bit: \xc3\xa9t\xc3\xa9\r\n\r\nend\r\n", tag)
	return b.Bytes()
}

// bodyOf returns the part after the header block, with LF line endings:
// Dovecot and smtp-sink add header lines, the body must be untouched.
func bodyOf(msg []byte) []byte {
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if _, body, ok := bytes.Cut(msg, []byte("\n\n")); ok {
		return body
	}
	return nil
}

func (e *e2e) waitBody(t *testing.T, n int, want []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := e.sink.WaitMessages(ctx, n); err != nil {
		t.Fatalf("sink: %v\n%s", err, e.dc.Log())
	}
	got := bodyOf(e.sink.Body(n - 1))
	if sha256.Sum256(got) != sha256.Sum256(bodyOf(want)) {
		t.Fatalf("sink message %d body: got %q, want %q", n, got, bodyOf(want))
	}
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func TestE2EPython(t *testing.T) {
	testenv.Require(t, "python3")
	e := newE2E(t)
	n := 0
	for _, c := range []struct{ mode, mech string }{
		{"starttls", "PLAIN"}, {"starttls", "LOGIN"}, {"implicit", "PLAIN"}, {"implicit", "LOGIN"},
	} {
		t.Run(c.mode+"/"+c.mech, func(t *testing.T) {
			msg := testMessage("py-" + c.mode + "-" + c.mech)
			out, err := e.python(t, c.mode, "alice", e.secret["alice"], c.mech, "alice@example.com", msg)
			if err != nil {
				t.Fatalf("send.py: %v\n%s", err, out)
			}
			n++
			e.waitBody(t, n, msg)
			from, rcpts := e.sink.Envelope(n - 1)
			if !strings.HasPrefix(from, "<alice@example.com>") || len(rcpts) != 1 || !strings.HasPrefix(rcpts[0], "<rcpt@example.net>") {
				t.Errorf("sink envelope: got %q %q, want alice@example.com → rcpt@example.net", from, rcpts)
			}
		})
	}
	t.Run("forged sender", func(t *testing.T) {
		out, err := e.python(t, "starttls", "alice", e.secret["alice"], "PLAIN", "ceo@example.com", testMessage("forged"))
		if err == nil || !strings.Contains(out, "SMTPERROR 553 5.7.1") {
			t.Fatalf("send.py: got %v %q, want exit 2 with 553 5.7.1", err, out)
		}
	})
	t.Run("bad password", func(t *testing.T) {
		out, err := e.python(t, "starttls", "alice", "aaaa-bbbb-cccc-dddd", "PLAIN", "alice@example.com", testMessage("bad"))
		if err == nil || !strings.Contains(out, "SMTPERROR 535 5.7.8") {
			t.Fatalf("send.py: got %v %q, want exit 2 with 535 5.7.8", err, out)
		}
	})
	if got := len(e.sink.Messages()); got != n {
		t.Errorf("sink messages: got %d, want %d", got, n)
	}
}

// python runs testdata/send.py with the secret in its environment.
func (e *e2e) python(t *testing.T, mode, user, secret, mech, from string, msg []byte) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := e.addr
	if mode == "implicit" {
		addr = e.tlsAddr
	}
	h, p := hostPort(t, addr)
	cmd := exec.Command("python3", "testdata/send.py", "--host", h, "--port", p, "--mode", mode,
		"--cafile", e.certs.CAFile, "--user", user, "--mech", mech, "--mail-from", from,
		"--rcpt", "rcpt@example.net", "--message", path)
	cmd.Env = append(os.Environ(), "LEGATE_TEST_PASSWORD="+secret)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestE2ESwaks(t *testing.T) {
	testenv.Require(t, "swaks")
	e := newE2E(t)
	for i, c := range []struct{ tls, mech string }{{"-tls", "PLAIN"}, {"-tlsc", "LOGIN"}, {"-tls", "LOGIN"}, {"-tlsc", "PLAIN"}} {
		t.Run(c.tls+"/"+c.mech, func(t *testing.T) {
			msg := testMessage(fmt.Sprintf("swaks-%d", i))
			path := filepath.Join(t.TempDir(), "msg.eml")
			// swaks always sends CRLF before the final dot: give it the
			// message without its last line ending.
			if err := os.WriteFile(path, bytes.TrimSuffix(msg, []byte("\r\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			addr := e.addr
			if c.tls == "-tlsc" {
				addr = e.tlsAddr
			}
			h, p := hostPort(t, addr)
			cmd := exec.Command("swaks", "--server", h, "--port", p, c.tls, "--tls-verify", "--tls-ca-path", e.certs.CAFile,
				"--auth", c.mech, "--auth-user", "alice", "--from", "alice@example.com", "--to", "rcpt@example.net",
				"--ehlo", "swaks.test", "--data", "@"+path, "--timeout", "60")
			// The secret goes through swaks' environment options, not argv.
			cmd.Env = append(os.Environ(), "SWAKS_OPT_auth_password="+e.secret["alice"])
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			if bytes.Contains(out, []byte(e.secret["alice"])) {
				// swaks prints the AUTH exchange base64-encoded only; a raw secret would be a leak in its transcript.
				t.Logf("note: swaks transcript shows the secret")
			}
			e.waitBody(t, i+1, msg)
		})
	}
}

func TestE2EMsmtp(t *testing.T) {
	testenv.Require(t, "msmtp")
	e := newE2E(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(e.secret["alice"]), 0o600); err != nil {
		t.Fatal(err)
	}
	h, p := hostPort(t, e.addr)
	_, tp := hostPort(t, e.tlsAddr)
	conf := fmt.Sprintf(`defaults
tls on
tls_trust_file %s
tls_host_override localhost
auth plain
user alice
from alice@example.com
passwordeval cat %s

account starttls
host %s
port %s
tls_starttls on

account implicit
host %s
port %s
tls_starttls off
auth login
`, e.certs.CAFile, pwFile, h, p, h, tp)
	confFile := filepath.Join(dir, "msmtprc")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, account := range []string{"starttls", "implicit"} {
		msg := testMessage("msmtp-" + account)
		cmd := exec.Command("msmtp", "-C", confFile, "-a", account, "rcpt@example.net")
		cmd.Stdin = bytes.NewReader(msg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("msmtp %s: %v\n%s", account, err, out)
		}
		e.waitBody(t, i+1, msg)
	}
}

// e2eLargeSize is the big message of TestE2ELargeMessageMemory: 50 MB, the
// default limits.max_message_size. (Dovecot 2.3 submission cuts DATA off at
// 40 MiB unless submission_max_mail_size is raised; the harness sets 100M.)
const e2eLargeSize = 50_000_000

// TestE2ELargeMessageMemory relays a large message to Dovecot and
// smtp-sink through the in-process proxy, measuring runtime.MemStats
// HeapInuse growth (peak during the transfer minus the baseline after a GC):
// the proxy streams, so it must stay under 8 MB.
func TestE2ELargeMessageMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB relay")
	}
	e := newE2E(t)
	size := e2eLargeSize
	if raceEnabled {
		size = 5_000_000
	}
	rc := e.dialAuthed("alice")
	// No SIZE parameter: see the report on Dovecot's size limit.
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<rcpt@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	stop := heapPeak()
	_ = rc.conn.SetDeadline(time.Now().Add(5 * time.Minute))
	hdr := "From: alice@example.com\r\nTo: rcpt@example.net\r\nSubject: big\r\n\r\n"
	io.WriteString(rc.conn, hdr)
	sum, n, err := writeBody(rc.conn, size, true)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(rc.conn, ".\r\n")
	if code, msg, err := rc.tp.ReadResponse(250); err != nil {
		t.Fatalf("end of DATA: got %d %q (%v), want 250\n%s", code, msg, err, lastLines(e.dc.Log(), 15))
	}
	base, peak := stop()
	growth := int64(peak) - int64(base)
	t.Logf("%d MB relay via Dovecot: HeapInuse baseline %.1f MiB, peak %.1f MiB, growth %.2f MiB", size/1_000_000, mib(base), mib(peak), float64(growth)/(1<<20))
	if growth > 8<<20 {
		t.Errorf("heap growth: got %.2f MiB, want <= 8 MiB", float64(growth)/(1<<20))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.sink.WaitMessages(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Hash the sink's copy without holding two copies: the body part, LF
	// endings; our generator's lines are CRLF.
	body := bodyOf(e.sink.Body(0))
	want := sha256.New()
	if _, _, err := writeBody(newCRLFToLF(want), size, false); err != nil {
		t.Fatal(err)
	}
	var w [32]byte
	copy(w[:], want.Sum(nil))
	if sha256.Sum256(body) != w {
		t.Fatalf("sink body: %d bytes, SHA-256 differs from the %d bytes sent (crlf sha %x)", len(body), n, sum[:4])
	}
}

// crlfToLF writes to w with CRLF turned into LF, also when a write ends
// between the CR and the LF.
type crlfToLF struct {
	w  io.Writer
	cr *bool // a CR ended the previous write
}

func newCRLFToLF(w io.Writer) crlfToLF { return crlfToLF{w: w, cr: new(bool)} }

func (c crlfToLF) Write(p []byte) (int, error) {
	n := len(p)
	out := make([]byte, 0, len(p)+1)
	if *c.cr && (len(p) == 0 || p[0] != '\n') {
		out = append(out, '\r')
	}
	*c.cr = false
	if len(p) > 0 && p[len(p)-1] == '\r' {
		*c.cr = true
		p = p[:len(p)-1]
	}
	out = append(out, bytes.ReplaceAll(p, []byte("\r\n"), []byte("\n"))...)
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// TestE2EEnvelopeAndBareCR (issue #13 item 7) through real Dovecot
// submission to smtp-sink: a quoted local part holding parameters arrives
// as one quoted recipient without DSN parameters, and "x\r.\r\n" in DATA
// arrives as two lines, the dot one intact, never as an early end of data.
func TestE2EEnvelopeAndBareCR(t *testing.T) {
	e := newE2E(t)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd(`RCPT TO:<"v@evil> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x"@example.com>`, 250, "")
	rc.cmd("DATA", 354, "")
	_ = rc.conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(rc.conn, "Subject: cr\r\n\r\nx\r.\r\nMAIL FROM:<evil@example.com>\r\nend\r\n.\r\n")
	rc.expectFor("end of DATA", 250, "")
	rc.cmd("QUIT", 221, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.sink.WaitMessages(ctx, 1); err != nil {
		t.Fatalf("sink: %v\n%s", err, e.dc.Log())
	}
	_, rcpts := e.sink.Envelope(0)
	if len(rcpts) != 1 || !strings.HasPrefix(rcpts[0], `<"v@evil> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x"@example.com>`) ||
		strings.Contains(strings.TrimPrefix(rcpts[0], `<"v@evil> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x"@example.com>`), "NOTIFY") {
		t.Errorf("sink recipients: got %q, want the one quoted address without NOTIFY", rcpts)
	}
	if got, want := string(bodyOf(e.sink.Body(0))), "x\n.\nMAIL FROM:<evil@example.com>\nend\n"; got != want {
		t.Errorf("sink body: got %q, want %q", got, want)
	}
	if n := len(e.sink.Messages()); n != 1 {
		t.Errorf("sink messages: got %d, want 1", n)
	}
}

// TestE2EXCLIENT (issue #17 item 6): with Legate in Dovecot's
// login_trusted_networks, Dovecot submission offers XCLIENT and logs the
// real client's address (rip=) for a login made through Legate from
// another loopback address.
func TestE2EXCLIENT(t *testing.T) {
	e := newE2E(t, func(o *testenv.DovecotOptions) { o.TrustedNetworks = "127.0.0.1/32" })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := &rawClient{t: t, conn: c, tp: textproto.NewConn(c)}
	rc.expect(220, "")
	rc.cmd("EHLO client.test", 250, "")
	rc.startTLS(e.certs.ClientTLS)
	rc.cmd("EHLO client.test", 250, "")
	rc.cmd("AUTH PLAIN "+plainIR("", "alice", e.secret["alice"]), 235, "")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("QUIT", 221, "")
	waitFor(t, 5*time.Second, "Dovecot to log the login", func() bool { return strings.Contains(e.dc.Log(), "rip=127.0.0.2") })
	if strings.Contains(e.logs.String(), "upstream refused XCLIENT") {
		t.Errorf("Legate log: XCLIENT refused\n%s", lastLines(e.dc.Log(), 10))
	}
}
