package testenv

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// IMAPLogin connects to an IMAP server at addr from the loopback address
// from ("" for any), sends LOGIN user pass (quoted strings) after the
// greeting and returns the tagged answer, e.g. "a OK ..." or "a NO ...".
func IMAPLogin(t testing.TB, addr, from, user, pass string) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	fmt.Fprintf(c, "a LOGIN %q %q\r\n", user, pass)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("LOGIN: %v", err)
		}
		if strings.HasPrefix(line, "a ") {
			return strings.TrimSpace(line)
		}
	}
}
