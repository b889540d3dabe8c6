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
