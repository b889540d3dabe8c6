package imap_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// halfCloseTranscript sends LOGIN, SELECT and LOGOUT in one write, shuts
// the write side of the connection and returns everything read until the
// server closes.
func halfCloseTranscript(t *testing.T, c net.Conn, login string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	greeting := make([]byte, 4096)
	if n, err := c.Read(greeting); err != nil || !strings.HasPrefix(string(greeting[:n]), "* OK") {
		t.Fatalf("greeting: got %q, %v", greeting[:n], err)
	}
	if _, err := io.WriteString(c, login+"b SELECT INBOX\r\nc LOGOUT\r\n"); err != nil {
		t.Fatal(err)
	}
	var cw interface{ CloseWrite() error }
	switch x := c.(type) {
	case *tls.Conn:
		if err := x.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		cw = x.NetConn().(*net.TCPConn)
	case *net.TCPConn:
		cw = x
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Logf("read until close: %v", err)
	}
	return string(out)
}

// checkTranscript checks that all three commands were answered.
func checkTranscript(t *testing.T, what, out string) {
	t.Helper()
	for _, want := range []string{"\r\na OK", "\r\nb OK [READ-WRITE]", "\r\n* BYE", "\r\nc OK"} {
		if !strings.Contains("\r\n"+out, want) {
			t.Errorf("%s: transcript lacks %q:\n%s", what, strings.TrimPrefix(want, "\r\n"), out)
		}
	}
}

// TestE2EHalfCloseReturnsAllAnswers: a client that sends LOGIN, SELECT
// and LOGOUT in one write and then shuts its write side (SHUT_WR) gets all
// three answers through Legate, as it does from Dovecot directly: on the
// client's end of stream Legate closes the upstream's write side and
// relays its answers until it closes (issue #18.5).
func TestE2EHalfCloseReturnsAllAnswers(t *testing.T) {
	e := newE2E(t)
	// Directly against Dovecot, the baseline.
	direct, err := net.DialTimeout("tcp", e.dc.IMAPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	checkTranscript(t, "dovecot directly",
		halfCloseTranscript(t, direct, fmt.Sprintf("a LOGIN alice %s\r\n", e.dc.Users["alice"])))

	pol := policy.Default()
	pol.RequireTLS = false
	for _, mode := range []string{upstream.ModeNone, upstream.ModeSTARTTLS, upstream.ModeImplicit} {
		plainAddr, tlsAddr := e.legate(mode, upstream.LoginAuthzid, pol)
		for _, clientTLS := range []bool{false, true} {
			name := fmt.Sprintf("upstream %s, client TLS %v", mode, clientTLS)
			t.Run(name, func(t *testing.T) {
				var c net.Conn
				var err error
				if clientTLS {
					c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, e.certs.ClientTLS)
				} else {
					c, err = net.DialTimeout("tcp", plainAddr, 5*time.Second)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				start := time.Now()
				out := halfCloseTranscript(t, c, "a LOGIN alice "+e.secrets["alice"]+"\r\n")
				checkTranscript(t, "through Legate", out)
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("took %v, want the upstream's close to end the session at once", d)
				}
			})
		}
	}
}
