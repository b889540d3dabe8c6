package smtp

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
)

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

func TestUpstreamSeparatorLogin(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Upstream.Login = upstream.LoginSeparator })
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("hi\r\n.", 250, "")
	if m := e.up.messages(); len(m) != 1 || m[0].Identity != "alice" {
		t.Fatalf("upstream messages: got %+v, want one logged in as alice", m)
	}
}

func TestNoUpstreamConfigured(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Upstream = nil })
	e.dialAuthedExpect("alice", 454, "4.7.0")
}

// TestPipelinedMailRefused: with an upstream that offers PIPELINING, MAIL
// is answered locally and sent with the first RCPT; the upstream's refusal
// of MAIL is the client's answer to that RCPT, the transaction is over
// (later RCPT and DATA get 503) and the next one goes through cleanly.
func TestPipelinedMailRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AllowAnySender = true })
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<refused@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 553, "5.7.1 Sender address rejected by upstream")
	rc.cmd("RCPT TO:<y@example.net>", 503, "5.5.1")
	rc.cmd("DATA", 503, "5.5.1")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("Subject: t\r\n\r\nbody\r\n.", 250, "")
	// RSET of a transaction whose MAIL was not sent yet, then another.
	rc.cmd("MAIL FROM:<refused@example.com>", 250, "")
	rc.cmd("RSET", 250, "")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<nobody@example.net>", 550, "5.1.1") // MAIL taken, RCPT refused
	rc.cmd("RCPT TO:<z@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("Subject: u\r\n\r\nbody\r\n.", 250, "")
	msgs := e.up.messages()
	if len(msgs) != 2 || msgs[0].From != "alice@example.com" || strings.Join(msgs[0].To, ",") != "x@example.net" ||
		msgs[1].From != "alice@example.com" || strings.Join(msgs[1].To, ",") != "z@example.net" {
		t.Fatalf("upstream messages: got %+v, want alice to x@example.net, then alice to z@example.net", msgs)
	}
	if n := e.up.conns.Load(); n != 1 {
		t.Fatalf("upstream connections: got %d, want 1 (the refusal must not cost the session)", n)
	}
}

// TestLoginUsesUpstreamInForce: a connection accepted before a reload that
// moved the upstream logs in to the new one: the upstream is read at AUTH,
// not when the connection was accepted.
func TestLoginUsesUpstreamInForce(t *testing.T) {
	e := newEnv(t)
	rc := e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	rc.startTLS(e.certs.ClientTLS)
	rc.cmd("EHLO client.test", 250, "AUTH PLAIN LOGIN")

	moved := startUpstream(t)
	o := *e.srv.opts.Load()
	up := *o.Upstream
	up.Address = moved.Addr
	o.Upstream = &up
	e.srv.SetOptions(o) // what a reload does

	rc.cmd("AUTH PLAIN "+plainIR("", "alice", e.secret["alice"]), 235, "")
	if got := moved.conns.Load(); got != 1 {
		t.Errorf("sessions at the upstream in force: %d, want 1", got)
	}
	if got := e.up.conns.Load(); got != 0 {
		t.Errorf("sessions at the upstream of before the reload: %d, want 0", got)
	}
}
