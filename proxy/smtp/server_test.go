package smtp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/connlimit"
	"github.com/legate-proxy/legate/internal/upstream"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestEHLOBeforeAndAfterSTARTTLS(t *testing.T) {
	e := newEnv(t)
	rc := e.dialRaw()
	ehlo := rc.cmd("EHLO client.test", 250, "STARTTLS")
	for _, want := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", fmt.Sprintf("SIZE %d", DefaultMaxMessageBytes)} {
		if !strings.Contains(ehlo, want) {
			t.Errorf("plaintext EHLO: got %q, want it to contain %q", ehlo, want)
		}
	}
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("plaintext EHLO: got %q, want no AUTH before STARTTLS", ehlo)
	}
	rc.cmd("AUTH PLAIN "+plainIR("", "alice", e.secret["alice"]), 530, "5.7.0 Must issue a STARTTLS command first")
	rc.cmd("MAIL FROM:<alice@example.com>", 530, "5.7.0 Must issue a STARTTLS command first")
	rc.startTLS(e.certs.ClientTLS)
	ehlo = rc.cmd("EHLO client.test", 250, "AUTH PLAIN LOGIN")
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO after STARTTLS: got %q, want no STARTTLS", ehlo)
	}
	rc.cmd("MAIL FROM:<alice@example.com>", 530, "5.7.0 Authentication required")
	rc.cmd("AUTH PLAIN "+plainIR("", "alice", e.secret["alice"]), 235, "2.0.0")
}

func TestImplicitTLS(t *testing.T) {
	e := newEnv(t)
	c, err := tls.Dial("tcp", e.tlsAddr, e.certs.ClientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := &rawClient{t: t, conn: c, tp: textproto.NewConn(c)}
	rc.expect(220, "legate.test")
	ehlo := rc.cmd("EHLO client.test", 250, "AUTH PLAIN LOGIN")
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("implicit TLS EHLO: got %q, want no STARTTLS", ehlo)
	}
	rc.cmd("AUTH LOGIN", 334, b64("Username:"))
	rc.cmd(b64("alice"), 334, b64("Password:"))
	rc.cmd(b64(e.secret["alice"]), 235, "")
	if n := len(e.reg.List("alice")); n != 1 {
		t.Errorf("registered sessions: got %d, want 1", n)
	}
}

func TestAuthOutcomes(t *testing.T) {
	e := newEnv(t)
	e.clock.off.Store(int64(2 * time.Hour)) // e.expired is past its expiry
	type tc struct {
		name          string
		authzid, user string
		secret        func() string
		code          int
		want          string
	}
	cases := []tc{
		{"ok", "", "alice", func() string { return e.secret["alice"] }, 235, "2.0.0"},
		{"authzid same", "alice", "alice", func() string { return e.secret["alice"] }, 235, "2.0.0"},
		{"wrong secret", "", "alice", func() string { return "aaaa-bbbb-cccc-dddd" }, 535, "5.7.8 Authentication credentials invalid"},
		{"unknown user", "", "zed", func() string { return e.secret["alice"] }, 535, "5.7.8 Authentication credentials invalid"},
		{"other user's secret", "", "alice", func() string { return e.secret["bob"] }, 535, "5.7.8 Authentication credentials invalid"},
		{"refused: blocked user", "", "bob", func() string { return e.secret["bob"] }, 535, "5.7.8 Authentication refused"},
		{"refused: scope", "", "dave", func() string { return e.secret["dave"] }, 535, "5.7.8 Authentication refused"},
		{"expired", "", "alice", func() string { return e.expired }, 535, "expired"},
		{"throttled", "", "carol", func() string { return e.secret["carol"] }, 454, "4.7.0"},
		{"authzid other", "bob", "alice", func() string { return e.secret["alice"] }, 535, "5.7.8 Authorization identity"},
	}
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		for _, c := range cases {
			if mech == "LOGIN" && c.authzid != "" {
				continue
			}
			t.Run(mech+"/"+c.name, func(t *testing.T) {
				rc := e.dialRaw()
				rc.cmd("EHLO client.test", 250, "")
				rc.startTLS(e.certs.ClientTLS)
				rc.cmd("EHLO client.test", 250, "")
				if mech == "PLAIN" {
					rc.cmd("AUTH PLAIN", 334, "")
					rc.cmd(plainIR(c.authzid, c.user, c.secret()), c.code, c.want)
				} else {
					rc.cmd("AUTH LOGIN "+b64(c.user), 334, b64("Password:"))
					rc.cmd(b64(c.secret()), c.code, c.want)
				}
				rc.cmd("QUIT", 221, "")
			})
		}
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	e := newEnv(t, func(o *Options) { o.Upstream.Address = dead })
	rc := e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	rc.startTLS(e.certs.ClientTLS)
	rc.cmd("EHLO client.test", 250, "")
	start := time.Now()
	rc.cmd("AUTH PLAIN "+plainIR("", "alice", e.secret["alice"]), 454, "4.7.0")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("upstream down answer took %v, want < 3s", d)
	}
	rc.cmd("MAIL FROM:<alice@example.com>", 530, "Authentication required")
	if n := len(e.reg.List("")); n != 0 {
		t.Errorf("registered sessions: got %d, want 0", n)
	}
}

func TestUpstreamBlackhole(t *testing.T) {
	// An upstream that accepts TCP but never greets must give 454, not hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	e := newEnv(t, func(o *Options) {
		o.Upstream.Address = ln.Addr().String()
		o.Upstream.IOTimeout = 300 * time.Millisecond
	})
	rc := e.dialAuthedExpect("alice", 454, "4.7.0")
	_ = rc
}

func (e *env) dialAuthedExpect(user string, code int, want string) *rawClient {
	e.t.Helper()
	rc := e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	rc.startTLS(e.certs.ClientTLS)
	rc.cmd("EHLO client.test", 250, "")
	rc.cmd("AUTH PLAIN "+plainIR("", user, e.secret[user]), code, want)
	return rc
}

func TestRelay(t *testing.T) {
	e := newEnv(t)
	rc := e.dialAuthed("alice")
	body := "From: alice@example.com\r\nTo: x@example.net\r\nSubject: hi\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n"
	for i := 0; i < 2; i++ {
		rc.cmd("MAIL FROM:<alice@EXAMPLE.COM> SIZE=120 BODY=8BITMIME RET=HDRS ENVID=env+2Bid", 250, "")
		rc.cmd("RCPT TO:<x@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@example.net", 250, "")
		rc.cmd("RCPT TO:<y@example.net>", 250, "")
		rc.cmd("DATA", 354, "")
		stuffed := strings.ReplaceAll("\r\n"+body, "\r\n.", "\r\n..")[2:]
		reply := rc.cmd(stuffed+".", 250, "queued as UPQ123")
		if !strings.HasPrefix(reply, "2.0.0") {
			t.Errorf("DATA reply: got %q, want the upstream's enhanced code 2.0.0", reply)
		}
	}
	rc.cmd("QUIT", 221, "")
	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("upstream messages: got %d, want 2", len(msgs))
	}
	m := msgs[0]
	if m.Identity != "alice" || m.From != "alice@EXAMPLE.COM" || strings.Join(m.To, ",") != "x@example.net,y@example.net" {
		t.Errorf("upstream envelope: got identity %q from %q to %v, want alice, alice@EXAMPLE.COM, [x y]", m.Identity, m.From, m.To)
	}
	if string(m.Data) != body {
		t.Errorf("upstream body: got %q, want %q", m.Data, body)
	}
	if m.MailOpts.Size != 120 || m.MailOpts.Return != "HDRS" || m.MailOpts.EnvelopeID != "env+id" || m.MailOpts.Body != "8BITMIME" {
		t.Errorf("upstream MAIL options: got %+v, want SIZE=120 RET=HDRS ENVID=env+id BODY=8BITMIME", m.MailOpts)
	}
	if len(m.RcptOpts) == 0 || fmt.Sprint(m.RcptOpts[0].Notify) != "[FAILURE DELAY]" || m.RcptOpts[0].OriginalRecipient != "x@example.net" {
		t.Errorf("upstream RCPT options: got %+v, want NOTIFY=FAILURE,DELAY ORCPT", m.RcptOpts)
	}
	if n := e.up.conns.Load(); n != 1 {
		t.Errorf("upstream connections: got %d, want 1 (reused across transactions)", n)
	}
}

func TestSenderPolicy(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Options)
		from string
		code int
		want string
	}{
		{"own", nil, "alice@example.com", 250, ""},
		{"own, domain case", nil, "Alice.Smith@example.ORG", 250, ""},
		{"forged", nil, "ceo@example.com", 553, "5.7.1 Sender address not owned by user <alice>"},
		{"local part case", nil, "ALICE@example.com", 553, "5.7.1"},
		{"other user's", nil, "bob@example.com", 553, "5.7.1"},
		{"null sender", nil, "", 553, "5.7.1"},
		{"null sender allowed", func(o *Options) { o.AllowNullSender = true }, "", 250, ""},
		{"any sender allowed", func(o *Options) { o.AllowAnySender = true }, "ceo@example.com", 250, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mods []func(*Options)
			if c.mod != nil {
				mods = append(mods, c.mod)
			}
			e := newEnv(t, mods...)
			rc := e.dialAuthed("alice")
			rc.cmd("MAIL FROM:<"+c.from+">", c.code, c.want)
		})
	}
}

func TestRcptErrorPassedThrough(t *testing.T) {
	e := newEnv(t)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<nobody@example.net>", 550, "5.1.1 User unknown in virtual mailbox table")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("Subject: t\r\n\r\nbody\r\n.", 250, "")
	msgs := e.up.messages()
	if len(msgs) != 1 || strings.Join(msgs[0].To, ",") != "x@example.net" {
		t.Fatalf("upstream messages: got %+v, want one to x@example.net", msgs)
	}
	// An aborted transaction is reset upstream too.
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RSET", 250, "")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
}

func TestClientKilledMidData(t *testing.T) {
	e := newEnv(t)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	fmt.Fprintf(rc.conn, "Subject: half\r\n\r\n%s", strings.Repeat("partial line\r\n", 5000))
	time.Sleep(100 * time.Millisecond)
	rc.conn.Close()
	waitFor(t, 5*time.Second, "upstream to see the aborted DATA", func() bool { return e.up.abortedCount() == 1 })
	if n := len(e.up.messages()); n != 0 {
		t.Errorf("upstream messages: got %d, want 0", n)
	}
	waitFor(t, 5*time.Second, "the session to be unregistered", func() bool { return len(e.reg.List("")) == 0 })
}

func TestMessageTooLarge(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxMessageBytes = 1000 })
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com> SIZE=5000", 552, "5.3.4")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd(strings.Repeat("0123456789012345678\r\n", 100)+".", 552, "5.3.4")
	if n := len(e.up.messages()); n != 0 {
		t.Errorf("upstream messages: got %d, want 0", n)
	}
	// The session goes on with a new upstream connection.
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("small\r\n.", 250, "")
	if n := len(e.up.messages()); n != 1 {
		t.Errorf("upstream messages: got %d, want 1", n)
	}
}

func TestTooManyRecipients(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxRecipients = 2 })
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<a@example.net>", 250, "")
	rc.cmd("RCPT TO:<b@example.net>", 250, "")
	rc.cmd("RCPT TO:<c@example.net>", 452, "4.5.3")
}

func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	t.Run("100KB line", func(t *testing.T) {
		rc := e.dialRaw()
		fmt.Fprintf(rc.conn, "EHLO %s\r\n", strings.Repeat("x", 100<<10))
		rc.expect(500, "5.4.0")
		rc.expectClosed(2 * time.Second)
	})
	t.Run("100KB line in DATA", func(t *testing.T) {
		rc := e.dialAuthed("alice")
		rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
		rc.cmd("RCPT TO:<x@example.net>", 250, "")
		rc.cmd("DATA", 354, "")
		fmt.Fprintf(rc.conn, "%s\r\n.\r\n", strings.Repeat("y", 100<<10))
		rc.expect(500, "5.4.0")
		rc.expectClosed(2 * time.Second)
		if n := len(e.up.messages()); n != 0 {
			t.Errorf("upstream messages: got %d, want 0", n)
		}
	})
	t.Run("AUTH before EHLO", func(t *testing.T) {
		rc := e.dialRaw()
		rc.cmd("AUTH PLAIN "+plainIR("", "alice", "x"), 502, "5.5.1")
	})
	t.Run("garbage after AUTH", func(t *testing.T) {
		rc := e.dialRaw()
		rc.cmd("EHLO c", 250, "")
		rc.startTLS(e.certs.ClientTLS)
		rc.cmd("EHLO c", 250, "")
		rc.cmd("AUTH PLAIN", 334, "")
		rc.cmd("!!! not base64 !!!", 454, "4.7.0")
		rc.cmd("AUTH PLAIN "+b64("no nul bytes"), 501, "5.5.2")
		rc.cmd("AUTH PLAIN "+b64("a\x00b\x00c\x00d"), 501, "5.5.2")
		rc.cmd("AUTH PLAIN "+b64("\x00\x00pw"), 501, "5.5.2")
		rc.cmd("AUTH LOGIN", 334, "")
		rc.cmd("*", 501, "")
		rc.cmd("AUTH CRAM-MD5", 504, "5.7.4")
		rc.cmd("NOOP", 250, "")
	})
	t.Run("pipelined junk", func(t *testing.T) {
		rc := e.dialRaw()
		fmt.Fprint(rc.conn, "EHLO c\r\nFOO\r\n\x00\x01\x02\r\nBAR baz\r\nQUX\r\nZAP\r\nMAIL FROM:<x>\r\n")
		rc.expect(250, "")
		_ = rc.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n := 0
		for {
			code, msg, err := rc.tp.ReadResponse(0)
			if err != nil && code == 0 {
				break // closed
			}
			n++
			if code < 500 {
				t.Errorf("reply to junk: got %d %q, want 5xx", code, msg)
			}
		}
		if n < 4 || n > 6 {
			t.Errorf("replies before close: got %d, want the 4 allowed errors and a farewell", n)
		}
		rc.expectClosed(time.Second)
	})
	t.Run("too many commands before auth", func(t *testing.T) {
		rc := e.dialRaw()
		rc.cmd("EHLO c", 250, "")
		for i := 1; i < DefaultMaxPreauthCommands; i++ {
			rc.cmd("RSET", 250, "")
		}
		_ = rc.conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(rc.conn, "RSET\r\n")
		rc.expect(421, "4.7.0")
		rc.expectClosed(2 * time.Second)
	})
	// The server still serves.
	rc := e.dialAuthed("alice")
	rc.cmd("NOOP", 250, "")
}

func TestConnLimit(t *testing.T) {
	lim := connlimit.New(0, 1)
	e := newEnv(t, func(o *Options) { o.Limiter = lim })
	first := e.dialRaw()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	second := &rawClient{t: t, conn: c, tp: textproto.NewConn(c)}
	second.expect(421, "4.7.0")
	second.expectClosed(2 * time.Second)
	first.cmd("QUIT", 221, "")
	waitFor(t, 2*time.Second, "the slot to be released", func() bool { return lim.Total() == 0 })
	e.dialRaw().cmd("NOOP", 250, "")
}

func TestRegistryKillClosesSession(t *testing.T) {
	e := newEnv(t)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	waitFor(t, time.Second, "upstream session", func() bool { return e.up.live.Load() == 1 })
	start := time.Now()
	if n := e.reg.KillUser("alice"); n != 1 {
		t.Fatalf("KillUser: got %d, want 1", n)
	}
	rc.expectClosed(time.Second)
	waitFor(t, time.Second, "upstream connection closed", func() bool { return e.up.live.Load() == 0 })
	waitFor(t, time.Second, "session unregistered", func() bool { return len(e.reg.List("")) == 0 })
	t.Logf("closed in %v", time.Since(start))
}

func TestIdleTimeoutRefreshedBySlowData(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.IdleTimeout = 400 * time.Millisecond })
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	start := time.Now()
	for i := 0; i < 12; i++ { // 12 × 150ms: 1.8s total, far above the idle timeout
		fmt.Fprintf(rc.conn, "chunk %d\r\n", i)
		time.Sleep(150 * time.Millisecond)
	}
	rc.cmd(".", 250, "")
	if d := time.Since(start); d < time.Second {
		t.Fatalf("DATA took %v, want > 1s for the test to mean anything", d)
	}
	if n := len(e.up.messages()); n != 1 {
		t.Fatalf("upstream messages: got %d, want 1", n)
	}
	// A silent client is cut off.
	rc.expect(421, "4.4.2")
}

func TestPreauthTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PreauthTimeout = 500 * time.Millisecond })
	rc := e.dialRaw()
	start := time.Now()
	for time.Since(start) < 300*time.Millisecond { // busy, but not authenticating
		rc.cmd("NOOP", 250, "")
		time.Sleep(50 * time.Millisecond)
	}
	rc.expect(421, "4.4.2")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("pre-auth timeout after %v, want about 500ms", d)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t)
	pre := e.dialRaw()
	authed := e.dialAuthed("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- e.srv.Shutdown(ctx) }()
	pre.expectClosed(time.Second)
	authed.cmd("NOOP", 250, "") // still served while draining
	if err := <-errc; err != context.DeadlineExceeded {
		t.Errorf("Shutdown: got %v, want %v", err, context.DeadlineExceeded)
	}
	authed.expectClosed(time.Second)
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Errorf("dial after Shutdown: got nil error, want refused")
	}
}

func TestUpstreamSeparatorLoginAndMissingUpstream(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Upstream = nil })
	e.dialAuthedExpect("alice", 454, "4.7.0")
	_ = upstream.LoginSeparator
}
