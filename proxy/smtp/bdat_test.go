package smtp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBDAT: chunks reach the upstream as one dot-stuffed DATA, bare line
// ends normalised; refused chunks are read to their end, never as commands.
func TestBDAT(t *testing.T) {
	e, ru := newRawEnv(t, false)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	send := func(chunk string, last bool, code int, want string) {
		t.Helper()
		l := ""
		if last {
			l = " LAST"
		}
		_ = rc.conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(rc.conn, "BDAT %d%s\r\n%s", len(chunk), l, chunk)
		rc.expectFor(fmt.Sprintf("BDAT %q", chunk), code, want)
	}
	send(".dot first\r\nx\r", false, 250, "octets received")
	send(".\r\nbare\nQUIT\r\n", false, 250, "")
	send("no end", true, 250, "REC1")
	b := ru.bodies()
	if want := "..dot first\r\nx\r\n..\r\nbare\r\nQUIT\r\nno end\r\n.\r\n"; len(b) != 1 || string(b[0]) != want {
		t.Fatalf("upstream body: got %q, want %q", b, want)
	}
	// Refused chunks are skipped whole: their bytes are not commands.
	send("QUIT\r\n", false, 503, "5.5.1")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	send("RSET\r\n", true, 503, "Need RCPT")
	rc.cmd("NOOP", 250, "")
	fmt.Fprint(rc.conn, "BDAT x\r\n")
	rc.expect(501, "5.5.4")
	rc.expectClosed(2 * time.Second)
}

// TestE2EBDAT sends a message in chunks through Legate to real Dovecot
// submission and smtp-sink.
func TestE2EBDAT(t *testing.T) {
	e := newE2E(t)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<rcpt@example.net>", 250, "")
	msg := string(testMessage("bdat"))
	cut := len(msg) / 2
	for i, chunk := range []string{msg[:cut], msg[cut:]} {
		last := ""
		if i == 1 {
			last = " LAST"
		}
		_ = rc.conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(rc.conn, "BDAT %d%s\r\n%s", len(chunk), last, chunk)
		rc.expectFor(fmt.Sprintf("chunk %d", i), 250, "")
	}
	rc.cmd("QUIT", 221, "")
	e.waitBody(t, 1, []byte(msg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m, _ := e.sink.WaitMessages(ctx, 1); len(m) != 1 || !strings.Contains(string(m[0]), "Subject: bdat") {
		t.Errorf("sink: got %d messages, want the one with Subject: bdat", len(m))
	}
}
