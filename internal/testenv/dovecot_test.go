package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestDovecotLogins(t *testing.T) {
	d := StartDovecot(t, DovecotOptions{})
	alicePW := d.Users["alice"]
	tlsConf := d.Certs.ClientTLS.Clone()
	dialStartTLS := func() (*imapclient.Client, error) {
		return imapclient.DialStartTLS(d.IMAPAddr, &imapclient.Options{TLSConfig: tlsConf})
	}
	dialTLS := func() (*imapclient.Client, error) {
		return imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: tlsConf})
	}
	dialPlain := func() (*imapclient.Client, error) { return imapclient.DialInsecure(d.IMAPAddr, nil) }
	login := func(user, pw string) func(*imapclient.Client) error {
		return func(c *imapclient.Client) error { return c.Login(user, pw).Wait() }
	}
	tests := []struct {
		name   string
		dial   func() (*imapclient.Client, error)
		auth   func(*imapclient.Client) error
		wantOK bool
	}{
		{"plain LOGIN over STARTTLS", dialStartTLS, login("alice", alicePW), true},
		{"plain LOGIN without TLS", dialPlain, login("alice", alicePW), true},
		{"master LOGIN alice*legate", dialStartTLS, login("alice*"+d.MasterUser, d.MasterPassword), true},
		{"master LOGIN over IMAPS", dialTLS, login("alice*"+d.MasterUser, d.MasterPassword), true},
		{"master SASL PLAIN authzid", dialStartTLS, func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient("alice", d.MasterUser, d.MasterPassword))
		}, true},
		{"wrong password", dialStartTLS, login("alice", "wrong"), false},
		{"master with wrong password", dialStartTLS, login("alice*"+d.MasterUser, "wrong"), false},
		{"user password as master", dialStartTLS, func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient("alice", "bob", d.Users["bob"]))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := d.LoginCount("alice")
			c, err := tt.dial()
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			err = tt.auth(c)
			if gotOK := err == nil; gotOK != tt.wantOK {
				t.Fatalf("login: got err %v, want ok=%v", err, tt.wantOK)
			}
			if !tt.wantOK {
				// The next successful login must be the only new one.
				c2, err := dialPlain()
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c2.Close()
				if err := c2.Login("alice", alicePW).Wait(); err != nil {
					t.Fatalf("login: %v", err)
				}
			} else if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatalf("select INBOX: %v", err)
			}
			got, err := d.WaitLoginCount(ctxTimeout(t, 5*time.Second), "alice", before+1)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // let a stray extra line arrive
			if got = d.LoginCount("alice"); got != before+1 {
				t.Errorf("LoginCount(alice): got %d, want %d", got, before+1)
			}
		})
	}
	if n := d.LoginCount("bob"); n != 0 {
		t.Errorf("LoginCount(bob): got %d, want 0", n)
	}
}

func TestDovecotAuthPenalty(t *testing.T) {
	tests := []struct {
		penalty  bool
		wantSlow bool
	}{
		{false, false},
		{true, true},
	}
	for _, tt := range tests {
		d := StartDovecot(t, DovecotOptions{AuthPenalty: tt.penalty})
		var last time.Duration
		for i := 0; i < 2; i++ {
			c, err := imapclient.DialInsecure(d.IMAPAddr, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := c.Login("alice", "wrong").Wait(); err == nil {
				t.Fatal("login with wrong password: got nil error")
			}
			last = time.Since(start)
			c.Close()
		}
		// Without the penalty a failure costs Dovecot's 0.5 s tick; with
		// it the second failure from the same IP waits 2 s more.
		if gotSlow := last > 1500*time.Millisecond; gotSlow != tt.wantSlow {
			t.Errorf("AuthPenalty=%v: second failed login took %v, want slow=%v", tt.penalty, last, tt.wantSlow)
		}
		d.Stop()
	}
}

func TestDovecotStopStart(t *testing.T) {
	d := StartDovecot(t, DovecotOptions{})
	addr := d.IMAPAddr
	d.Stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s after Stop: got nil error, want refused", addr)
	}
	d.Stop() // idempotent
	d.Start()
	if d.IMAPAddr != addr {
		t.Fatalf("IMAPAddr after Start: got %s, want %s", d.IMAPAddr, addr)
	}
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: d.Certs.ClientTLS})
	if err != nil {
		t.Fatalf("dial after restart: %v", err)
	}
	defer c.Close()
	if err := c.Login("bob", d.Users["bob"]).Wait(); err != nil {
		t.Fatalf("login after restart: %v", err)
	}
	if _, err := d.WaitLoginCount(ctxTimeout(t, 5*time.Second), "bob", 1); err != nil {
		t.Fatal(err)
	}
}

func TestDovecotDeliverIdle(t *testing.T) {
	d := StartDovecot(t, DovecotOptions{})
	exists := make(chan uint32, 10)
	c, err := imapclient.DialInsecure(d.IMAPAddr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(m *imapclient.UnilateralDataMailbox) {
				if m.NumMessages != nil {
					exists <- *m.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice*"+d.MasterUser, d.MasterPassword).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	d.Deliver("alice", "Subject: before\r\n\r\nfirst\r\n")
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("SELECT INBOX: got %d messages, want 1", sel.NumMessages)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatalf("idle: %v", err)
	}
	start := time.Now()
	d.Deliver("alice", "Subject: during idle\r\n\r\nsecond\r\n")
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("EXISTS during IDLE: got %d, want 2", n)
		}
		t.Logf("EXISTS after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("no EXISTS within 5s of Deliver")
	}
	if err := idle.Close(); err != nil {
		t.Fatalf("idle done: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("idle: %v", err)
	}
	if n := d.LoginCount("alice"); n != 1 {
		t.Errorf("LoginCount(alice): got %d, want 1 (Deliver must not log in)", n)
	}
}

func TestDovecotSubmission(t *testing.T) {
	sink := StartSink(t)
	d := StartDovecot(t, DovecotOptions{Submission: true, RelayAddr: sink.Addr})
	msg := "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: relay test\r\n\r\nhello\r\n.leading dot\r\n"

	c, err := smtp.DialStartTLS(d.SubmissionAddr, d.Certs.ClientTLS.Clone())
	if err != nil {
		t.Fatalf("dial submission: %v", err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("alice", d.MasterUser, d.MasterPassword)); err != nil {
		t.Fatalf("auth as alice via master: %v", err)
	}
	if err := c.SendMail("alice@example.com", []string{"bob@example.com"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("quit: %v", err)
	}
	if _, err := sink.WaitMessages(ctxTimeout(t, 10*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	body := string(sink.Body(0))
	// Dovecot prepends its own Received: header; the rest is ours with
	// LF line endings and dot-stuffing undone.
	want := strings.ReplaceAll(msg, "\r\n", "\n")
	if !strings.HasPrefix(body, "Received: ") || !strings.HasSuffix(body, want) {
		t.Errorf("relayed body:\n%q\nwant Dovecot's Received: header then\n%q", body, want)
	}
	from, rcpts := sink.Envelope(0)
	if !strings.HasPrefix(from, "<alice@example.com>") || len(rcpts) != 1 || !strings.HasPrefix(rcpts[0], "<bob@example.com>") {
		t.Errorf("envelope: got from %q rcpts %q, want <alice@example.com> and [<bob@example.com>]", from, rcpts)
	}
	if _, err := d.WaitLoginCount(ctxTimeout(t, 5*time.Second), "alice", 1); err != nil {
		t.Fatal(err)
	}
}

func TestSinkDirect(t *testing.T) {
	sink := StartSink(t)
	msgs := []string{
		"Subject: one\r\n\r\nbody one\r\n",
		"Subject: two\r\n\r\n..two dots\r\n.\r\nend\r\n",
	}
	for i := 3; i <= 10; i++ {
		msgs = append(msgs, fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i))
	}
	for _, m := range msgs {
		c, err := smtp.Dial(sink.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("a@example.com", []string{"b@example.com", "c@example.com"}, strings.NewReader(m)); err != nil {
			t.Fatalf("send: %v", err)
		}
		if err := c.Quit(); err != nil {
			t.Fatalf("quit: %v", err)
		}
	}
	if _, err := sink.WaitMessages(ctxTimeout(t, 5*time.Second), len(msgs)); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		got, want := string(sink.Body(i)), strings.ReplaceAll(m, "\r\n", "\n")
		if got != want {
			t.Errorf("Body(%d): got %q, want %q", i, got, want)
		}
		from, rcpts := sink.Envelope(i)
		// go-smtp adds BODY=8BITMIME since smtp-sink announces it.
		if !strings.HasPrefix(from, "<a@example.com>") || len(rcpts) != 2 || rcpts[1] != "<c@example.com>" {
			t.Errorf("Envelope(%d): got %q %q, want <a@example.com> and 2 recipients", i, from, rcpts)
		}
	}
}

func TestSinkAbortedTransaction(t *testing.T) {
	sink := StartSink(t)
	conn, err := net.Dial("tcp", sink.Addr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for _, cmd := range []string{"", "HELO me\r\n", "MAIL FROM:<a@example.com>\r\n", "RCPT TO:<b@example.com>\r\n", "DATA\r\n"} {
		if cmd != "" {
			if _, err := io.WriteString(conn, cmd); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(conn, "Subject: dropped\r\n\r\npartial\r\n")
	conn.Close()

	c, err := smtp.Dial(sink.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader("Subject: kept\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.WaitMessages(ctxTimeout(t, 5*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if msgs = sink.Messages(); len(msgs) != 1 || !strings.HasPrefix(string(sink.Body(0)), "Subject: kept") {
		t.Errorf("messages after an aborted transaction: got %d (%q), want only the kept one", len(msgs), msgs)
	}
}

func TestSplitDump(t *testing.T) {
	dump := "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: me\nX-Mail-Args: <a@x>\nX-Rcpt-Args: <b@y>\n" +
		"Received: from me ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 39f3cfc9;\n\tSat, 28 Nov 2026 04:50:28 +0000 (UTC)\n" +
		"Received: from dovecot\n\tby x;\n\tdate\nSubject: hi\n\nline1\n.dot\n\n"
	lines, body := splitDump([]byte(dump))
	if len(lines) != 6 {
		t.Errorf("sink lines: got %d (%q), want 6", len(lines), lines)
	}
	want := "Received: from dovecot\n\tby x;\n\tdate\nSubject: hi\n\nline1\n.dot\n"
	if string(body) != want {
		t.Errorf("body: got %q, want %q", body, want)
	}
}

func TestCerts(t *testing.T) {
	c := NewCerts(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerTLS)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() { ln.Close(); <-done }()
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	tests := []struct {
		serverName string
		wantOK     bool
	}{
		{"localhost", true},
		{"127.0.0.1", true},
		{"example.com", false},
	}
	for _, tt := range tests {
		conf := c.ClientTLS.Clone()
		conf.ServerName = tt.serverName
		conn, err := tls.Dial("tcp", ln.Addr().String(), conf)
		if err == nil {
			conn.Close()
		}
		if gotOK := err == nil; gotOK != tt.wantOK {
			t.Errorf("handshake with ServerName %s: got err %v, want ok=%v", tt.serverName, err, tt.wantOK)
		}
	}
}

// fakeTB records Fatalf and Skipf; like testing.T they end the goroutine.
type fakeTB struct {
	testing.TB
	fatal, skip bool
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Fatalf(string, ...any)     { f.fatal = true; runtime.Goexit() }
func (f *fakeTB) Skipf(string, ...any)      { f.skip = true; runtime.Goexit() }
func (f *fakeTB) Cleanup(func())            {}
func (f *fakeTB) Logf(string, ...any)       {}
func (f *fakeTB) Errorf(s string, a ...any) { f.fatal = true }

func TestRequire(t *testing.T) {
	tests := []struct {
		ci                  string
		bins                []string
		wantFatal, wantSkip bool
	}{
		{"true", []string{"testenv-no-such-binary"}, true, false},
		{"", []string{"testenv-no-such-binary"}, false, true},
		{"false", []string{"sh", "testenv-no-such-binary"}, false, true},
		{"true", []string{"sh"}, false, false},
	}
	for _, tt := range tests {
		t.Setenv("CI", tt.ci)
		f := &fakeTB{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Require(f, tt.bins...)
		}()
		<-done
		if f.fatal != tt.wantFatal || f.skip != tt.wantSkip {
			t.Errorf("CI=%q Require(%v): got fatal=%v skip=%v, want fatal=%v skip=%v",
				tt.ci, tt.bins, f.fatal, f.skip, tt.wantFatal, tt.wantSkip)
		}
	}
	if _, err := LookPath("testenv-no-such-binary"); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("LookPath: got %v, want exec.ErrNotFound", err)
	}
}
