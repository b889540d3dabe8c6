package daemon

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestProxyProtocolListener: with listen.proxy_protocol.trusted, the IMAP
// listener takes the client's address from a trusted peer's PROXY header
// (the session is registered under it) and closes a trusted peer's
// connection that sends none within listen.proxy_protocol.timeout.
func TestProxyProtocolListener(t *testing.T) {
	d, ap := imapDaemon(t, "  require_tls: false\n", "  proxy_protocol:\n    trusted: [127.0.0.1/32]\n    timeout: 500ms\n")
	c, err := net.DialTimeout("tcp", d.Addr("imap").String(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "PROXY TCP4 192.0.2.7 10.0.0.1 51250 143\r\n")
	br := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, prefix) {
			t.Fatalf("got %q (%v), want a line starting %q", l, err, prefix)
		}
	}
	expect("* OK")
	fmt.Fprintf(c, "a LOGIN alice %s\r\n", ap.Secret)
	expect("a OK")
	sessions := d.Registry().List("alice")
	if len(sessions) != 1 || sessions[0].IP != netip.MustParseAddr("192.0.2.7") {
		t.Fatalf("sessions: got %+v, want one from 192.0.2.7", sessions)
	}

	// A trusted peer that sends no header is closed after the timeout.
	silent, err := net.DialTimeout("tcp", d.Addr("imap").String(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.Read(make([]byte, 64)); err == nil {
		t.Fatalf("headerless connection from a trusted peer: read %d bytes, want it closed", n)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("closed after %v, want about 500ms", took)
	}
}
