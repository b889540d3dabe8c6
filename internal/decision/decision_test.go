package decision

import (
	"context"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/policy"
)

// aliceRight allows alice with "right".
func aliceRight(r login.Request) login.Result {
	if r.User == "Alice@Example.com" && r.Secret == "right" {
		return logintest.Allow("alice", policy.RuleAllowAppPassword)
	}
	return logintest.Deny(policy.RuleBadCredentials)
}

func start(t *testing.T) (*logintest.Auth, string) {
	t.Helper()
	f := &logintest.Auth{Decide: aliceRight}
	path := filepath.Join(t.TempDir(), "d.sock")
	s, err := Listen(Options{Path: path, Login: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return f, path
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestCheckpasswordContract: exit codes and what reaches the login service.
func TestCheckpasswordContract(t *testing.T) {
	f, path := start(t)
	ctx := context.Background()
	dovecot := env(map[string]string{"SERVICE": "imap", "TCPREMOTEIP": "::ffff:192.0.2.7", "AUTH_SECURED": "secured"})
	tests := []struct {
		name  string
		in    string
		env   func(string) string
		code  int
		user  string
		asked bool
	}{
		{"allow", "Alice@Example.com\x00right\x00\x00", dovecot, ExitAllow, "alice", true},
		{"wrong password", "Alice@Example.com\x00wrong\x00\x00", dovecot, ExitDeny, "", true},
		{"pop3 is not decided here", "Alice@Example.com\x00right\x00\x00", env(map[string]string{"SERVICE": "pop3"}), ExitDeny, "", false},
		{"too long", "alice\x00" + strings.Repeat("x", MaxInput) + "\x00\x00", dovecot, ExitDeny, "", false},
		{"no NUL", "alice", dovecot, ExitDeny, "", false},
		{"userdb lookup", "alice\x00\x00\x00", env(map[string]string{"AUTHORIZED": "1"}), ExitUnavailable, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.Requests())
			code, user, _ := Checkpassword(ctx, path, strings.NewReader(tt.in), tt.env)
			if code != tt.code || user != tt.user {
				t.Errorf("got exit %d user %q, want %d %q", code, user, tt.code, tt.user)
			}
			reqs := f.Requests()
			asked := len(reqs) > before
			var last login.Request
			if asked {
				last = reqs[len(reqs)-1]
			}
			if asked != tt.asked {
				t.Errorf("login service asked: %v, want %v", asked, tt.asked)
			}
			if asked && (last.Protocol != policy.IMAP || !last.TLS || last.IP != netip.MustParseAddr("192.0.2.7") || last.Client != "dovecot/imap") {
				t.Errorf("login request %+v: want imap, TLS (secured), 192.0.2.7, client dovecot/imap", last)
			}
		})
	}
	if code, _, _ := Checkpassword(ctx, filepath.Join(t.TempDir(), "none.sock"), strings.NewReader("alice\x00right\x00\x00"), dovecot); code != ExitUnavailable {
		t.Errorf("no daemon: exit %d, want 111", code)
	}
	for svc, want := range map[string]string{"imap": policy.IMAP, "submission": policy.SMTP, "smtp": policy.SMTP, "pop3": "", "": ""} {
		if got, _ := Protocol(svc); got != want {
			t.Errorf("Protocol(%q) = %q, want %q", svc, got, want)
		}
	}
}

// TestStrictRequests: unknown fields, trailing data and over-long lines get
// no answer (the client then exits 111), and nothing is decided.
func TestStrictRequests(t *testing.T) {
	f, path := start(t)
	for _, raw := range []string{
		`{"user":"a","password":"b","service":"imap","admin":true}` + "\n",
		`{"user":"a","password":"b","service":"imap"} {}` + "\n",
		strings.Repeat("x", MaxRequest+10) + "\n",
		"not json\n",
	} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(raw))
		buf := make([]byte, 100)
		if n, _ := c.Read(buf); n != 0 {
			t.Errorf("request %.40q answered %q, want the connection closed", raw, buf[:n])
		}
		c.Close()
	}
	if len(f.Requests()) != 0 {
		t.Errorf("login service asked %d times, want 0", len(f.Requests()))
	}
}
