package imap_test

import (
	"bufio"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/proxy/imap"
)

// loginFrom logs in through Legate at addr from the local address from
// and logs out.
func loginFrom(t *testing.T, from, addr, secret string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (want %q)", err, prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
			if !strings.HasPrefix(l, "* ") {
				t.Fatalf("got %q, want %q", l, prefix)
			}
		}
	}
	expect("* OK")
	if _, err := c.Write([]byte("a LOGIN alice " + secret + "\r\nb LOGOUT\r\n")); err != nil {
		t.Fatal(err)
	}
	expect("a OK")
	expect("b OK")
}

// TestE2EPassClientAddress: with login_trusted_networks naming Legate's
// address, Dovecot logs (and decides with) the real client's address for
// a login made through Legate from 127.0.0.2 (issue #17.6). Switched off,
// or from an untrusted Legate, Dovecot sees Legate's own address and the
// login still works.
func TestE2EPassClientAddress(t *testing.T) {
	pol := policy.Default()
	pol.RequireTLS = false
	rip := regexp.MustCompile(`Login: user=<alice>.*\brip=([0-9.]+)`)
	lastRIP := func(dc *testenv.Dovecot) string {
		var got string
		for range 100 { // Dovecot logs asynchronously
			if m := rip.FindAllStringSubmatch(dc.Log(), -1); len(m) > 0 {
				got = m[len(m)-1][1]
			}
			if got != "" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return got
	}
	for _, tt := range []struct {
		name    string
		trusted string
		pass    bool
		want    string
	}{
		{"trusted, passed on", "127.0.0.1/32", true, "127.0.0.2"},
		{"trusted, switched off", "127.0.0.1/32", false, "127.0.0.1"},
		{"untrusted, passed on", "", true, "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newE2EWith(t, testenv.DovecotOptions{TrustedNetworks: tt.trusted})
			e.mutate = func(o *imap.Options) { o.PassClientAddress = tt.pass }
			for _, mode := range []string{upstream.ModeSTARTTLS, upstream.ModeNone} {
				addr, _ := e.legate(mode, upstream.LoginAuthzid, pol)
				before := e.dc.LoginCount("alice")
				loginFrom(t, "127.0.0.2", addr, e.secrets["alice"])
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := e.dc.WaitLoginCount(ctx, "alice", before+1)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if got := lastRIP(e.dc); got != tt.want {
					t.Errorf("upstream %s: Dovecot logged rip=%s, want rip=%s", mode, got, tt.want)
				}
			}
		})
	}
}
