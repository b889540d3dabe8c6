package imap

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

func plain(authzid, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + user + "\x00" + pass))
}

func TestGreetingAndCapability(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	g := c.expect("* OK [CAPABILITY ")
	for _, want := range []string{"IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "STARTTLS", "AUTH=PLAIN"} {
		if !slices.Contains(strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(g)), want) {
			t.Errorf("greeting %q lacks %s", g, want)
		}
	}
	if strings.Contains(g, "LOGINDISABLED") {
		t.Errorf("greeting %q advertises LOGINDISABLED with require_tls off", g)
	}
	if !strings.HasSuffix(g, "] Legate ready") {
		t.Errorf("got greeting %q, want it to end with \"] Legate ready\"", g)
	}
	c.send("a1 CAPABILITY\r\n")
	c.expect("* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID STARTTLS AUTH=PLAIN")
	c.expect("a1 OK")
	c.send("a2 NOOP\r\n")
	c.expect("a2 OK")
	c.send(`a3 ID ("name" "Thunderbird" "version" "115.1" "os" NIL)` + "\r\n")
	c.expect(`* ID ("name" "Legate")`)
	c.expect("a3 OK")
	c.send("a4 SELECT INBOX\r\n")
	c.expect("a4 BAD")
	c.send("a5 LOGOUT\r\n")
	c.expect("* BYE")
	c.expect("a5 OK")
	c.expectClosed(time.Second)
}

func TestLoginForms(t *testing.T) {
	tests := []struct {
		name   string
		upMode string
		login  string
		// steps alternate: line to send, then prefix of the expected line.
		steps func(secret string) []string
	}{
		{"LOGIN quoted", "", "", func(s string) []string {
			return []string{`a LOGIN "alice" "` + s + `"` + "\r\n", "a OK [CAPABILITY " + postLoginCaps + "] Logged in"}
		}},
		{"LOGIN atoms", "", "", func(s string) []string {
			return []string{"a LOGIN alice " + s + "\r\n", "a OK [CAPABILITY"}
		}},
		{"LOGIN literal", "", "", func(s string) []string {
			return []string{"a LOGIN {5}\r\n", "+ ", "alice {19}\r\n", "+ ", s + "\r\n", "a OK [CAPABILITY"}
		}},
		{"LOGIN LITERAL+", "", "", func(s string) []string {
			return []string{"a LOGIN {5+}\r\nalice {19+}\r\n" + s + "\r\n", "a OK [CAPABILITY"}
		}},
		{"AUTHENTICATE SASL-IR", "", "", func(s string) []string {
			return []string{"a AUTHENTICATE PLAIN " + plain("", "alice", s) + "\r\n", "a OK [CAPABILITY"}
		}},
		{"AUTHENTICATE continuation", "", "", func(s string) []string {
			return []string{"a AUTHENTICATE PLAIN\r\n", "+ ", plain("alice", "alice", s) + "\r\n", "a OK [CAPABILITY"}
		}},
		{"upstream plain, separator", upstream.ModeNone, upstream.LoginSeparator, func(s string) []string {
			return []string{"a LOGIN alice " + s + "\r\n", "a OK [CAPABILITY " + postLoginCaps + "]"}
		}},
		{"upstream implicit TLS", upstream.ModeImplicit, "", func(s string) []string {
			return []string{"a LOGIN alice " + s + "\r\n", "a OK [CAPABILITY " + postLoginCaps + "]"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{upMode: tt.upMode, mutate: func(o *Options) { o.Upstream.Login = tt.login }})
			c := e.dial()
			c.expect("* OK")
			steps := tt.steps(e.secret["alice"])
			for i := 0; i < len(steps); i += 2 {
				c.send(steps[i])
				c.expect(steps[i+1])
			}
			if got := e.fake.loginList(); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("upstream logins: got %v, want [alice]", got)
			}
			c.send("b SELECT INBOX\r\n")
			c.expect("b OK SELECT done")
			if got := e.fake.received(); !slices.Equal(got, []string{"b SELECT"}) {
				t.Errorf("upstream received %v, want [b SELECT]", got)
			}
			if n := e.reg.Count("imap"); n != 1 {
				t.Errorf("registry: got %d imap sessions, want 1", n)
			}
		})
	}
}

func TestMasterLoginVariants(t *testing.T) {
	tests := []struct {
		name      string
		fake      fakeConfig
		login     string
		wantLogin bool
	}{
		{"no SASL-IR upstream", fakeConfig{noSASLIR: true}, upstream.LoginAuthzid, true},
		{"no caps in OK", fakeConfig{noOKCaps: true}, upstream.LoginAuthzid, true},
		{"separator, quoted specials", fakeConfig{masterUser: "legate", masterPass: `p"a\ss w`}, upstream.LoginSeparator, true},
		{"separator, literal", fakeConfig{masterUser: "legate", masterPass: "pä\x01ss"}, upstream.LoginSeparator, true},
		{"authzid, refused", fakeConfig{refuse: true}, upstream.LoginAuthzid, false},
		{"separator, refused", fakeConfig{refuse: true}, upstream.LoginSeparator, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{fake: tt.fake, mutate: func(o *Options) { o.Upstream.Login = tt.login }})
			c := e.dial()
			c.expect("* OK")
			c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
			if !tt.wantLogin {
				if got := c.readLine(); got != "a "+ansUpstreamDown {
					t.Fatalf("got %q, want %q", got, "a "+ansUpstreamDown)
				}
				return
			}
			got := c.readLine()
			if want := "a OK [CAPABILITY " + postLoginCaps + "] Logged in"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if got := e.fake.loginList(); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("upstream logins: got %v, want [alice]", got)
			}
		})
	}
}

func TestAuthenticateErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")
	c.send("a AUTHENTICATE PLAIN\r\n")
	c.expect("+ ")
	c.send("*\r\n")
	c.expect("a BAD")
	c.send("b AUTHENTICATE PLAIN !!notbase64\r\n")
	c.expect("b BAD")
	c.send("c AUTHENTICATE CRAM-MD5\r\n")
	c.expect("c NO")
	c.send("d AUTHENTICATE PLAIN " + plain("bob", "alice", e.secret["alice"]) + "\r\n")
	c.expect("d NO [AUTHORIZATIONFAILED]")
	c.send("e AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("no-nuls")) + "\r\n")
	c.expect("e BAD")
	if n := len(e.fake.loginList()); n != 0 {
		t.Errorf("upstream logins: got %d, want 0", n)
	}
}

func TestDenials(t *testing.T) {
	strict := policy.Default()
	strict.UserProtocols = map[string][]string{"carol": {"smtp"}}
	strict.BlockedUsers = []string{"bob"}
	tests := []struct {
		name, user, secretOf, want string
		opts                       envOptions
	}{
		{"bad password", "alice", "", "a " + ansBadCredentials, envOptions{}},
		{"unknown user", "nobody", "alice", "a " + ansBadCredentials, envOptions{}},
		{"wrong owner", "bob", "alice", "a " + ansBadCredentials, envOptions{}},
		{"admin", "root", "root", "a NO [AUTHORIZATIONFAILED] ", envOptions{}},
		{"blocked user", "bob", "bob", "a NO [AUTHORIZATIONFAILED] ", envOptions{}},
		{"protocol off for user", "carol", "carol", "a NO [AUTHORIZATIONFAILED] ", envOptions{}},
		{"out of scope", "alice", "alice-smtp", "a NO [AUTHORIZATIONFAILED] ", envOptions{}},
		{"expired", "alice", "alice-old", "a NO [EXPIRED] ", envOptions{}},
		{"throttled", "alice", "alice", "a " + ansThrottled, envOptions{throttle: fixedThrottle{}}},
		{"tls required", "alice", "alice", "a " + ansTLSRequired, envOptions{policy: &strict}},
		{"upstream down", "alice", "alice", "a " + ansUpstreamDown, envOptions{mutate: func(o *Options) { o.Upstream.Address = "127.0.0.1:1" }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.policy == nil {
				p := strict
				p.RequireTLS = false
				tt.opts.policy = &p
			}
			e := newEnv(t, tt.opts)
			c := e.dial()
			c.expect("* OK")
			secret := "AAAA-BBBB-CCCC-DDDD"
			if tt.secretOf != "" {
				secret = e.secret[tt.secretOf]
			}
			c.send(fmt.Sprintf("a LOGIN %s %s\r\n", tt.user, secret))
			got := c.readLine()
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %q, want prefix %q", got, tt.want)
			}
			if strings.Contains(got, secret) {
				t.Fatalf("answer %q contains the secret", got)
			}
			if n := len(e.fake.loginList()); n != 0 {
				t.Errorf("upstream logins: got %d, want 0", n)
			}
			// The connection stays usable after a refusal.
			c.send("b NOOP\r\n")
			c.expect("b OK")
		})
	}
}

func TestPrivacyRequired(t *testing.T) {
	p := policy.Default() // require_tls on
	e := newEnv(t, envOptions{policy: &p})
	c := e.dial()
	g := c.expect("* OK [CAPABILITY")
	if !strings.Contains(g, "LOGINDISABLED") || strings.Contains(g, "AUTH=PLAIN") {
		t.Errorf("greeting %q: want LOGINDISABLED and no AUTH=PLAIN", g)
	}
	c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
	c.expect("a NO [PRIVACYREQUIRED]")
	c.send("b AUTHENTICATE PLAIN\r\n")
	c.expect("b NO [PRIVACYREQUIRED]")

	c.startTLS(e.certs.ClientTLS)
	c.send("c CAPABILITY\r\n")
	caps := c.expect("* CAPABILITY")
	if strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "AUTH=PLAIN") {
		t.Errorf("after STARTTLS got %q, want AUTH=PLAIN without STARTTLS or LOGINDISABLED", caps)
	}
	c.expect("c OK")
	c.send("d STARTTLS\r\n")
	c.expect("d BAD")
	c.send("e LOGIN alice " + e.secret["alice"] + "\r\n")
	c.expect("e OK [CAPABILITY")

	// Implicit TLS accepts credentials at once.
	ct := e.dialTLS()
	g = ct.expect("* OK [CAPABILITY")
	if strings.Contains(g, "LOGINDISABLED") || strings.Contains(g, "STARTTLS") {
		t.Errorf("implicit TLS greeting %q: want no LOGINDISABLED, no STARTTLS", g)
	}
	ct.send("a AUTHENTICATE PLAIN " + plain("", "alice", e.secret["alice"]) + "\r\n")
	ct.expect("a OK [CAPABILITY")
	if got := e.fake.loginList(); len(got) != 2 {
		t.Errorf("upstream logins: got %v, want two", got)
	}
}

func TestStartTLSRejectsPipelinedPlaintext(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")
	c.send("s STARTTLS\r\nx LOGIN alice secret\r\n")
	c.expect("s OK")
	c.expectClosed(2 * time.Second)
}

// TestLoginUsesUpstreamInForce: a connection accepted before a reload that
// moved the upstream (or rotated its master credential) logs in to the new
// one: the upstream is read at login, not when the connection was accepted.
func TestLoginUsesUpstreamInForce(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")

	moved := startFake(t, fakeConfig{masterUser: "legate2", masterPass: "rotated"}, e.certs.ServerTLS, false)
	t.Cleanup(moved.close)
	o := *e.srv.opts.Load()
	up := *o.Upstream
	up.Address, up.MasterUser, up.MasterPassword = moved.addr(), moved.masterUser, moved.masterPass
	o.Upstream = &up
	e.srv.SetOptions(o) // what a reload does

	c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
	if got := c.readLine(); !strings.HasPrefix(got, "a OK ") {
		t.Fatalf("LOGIN after the upstream moved: %q, want OK", got)
	}
	if got := moved.loginList(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("logins at the upstream in force: %v, want [alice]", got)
	}
	if got := e.fake.loginList(); len(got) != 0 {
		t.Errorf("logins at the upstream of before the reload: %v, want none", got)
	}

	// The login service names the upstream of the configuration that
	// decided (login.Result.Upstream): it wins over the front-end's.
	third := startFake(t, fakeConfig{masterUser: "legate3", masterPass: "third"}, e.certs.ServerTLS, false)
	t.Cleanup(third.close)
	up3 := up
	up3.Address, up3.MasterUser, up3.MasterPassword = third.addr(), third.masterUser, third.masterPass
	rt := e.auth.Runtime()
	rt.Upstreams = map[string]*upstream.Config{policy.IMAP: &up3}
	e.auth.SetRuntime(rt)
	c2 := e.dial()
	c2.expect("* OK")
	c2.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
	if got := c2.readLine(); !strings.HasPrefix(got, "a OK ") {
		t.Fatalf("LOGIN with the upstream named by the login service: %q, want OK", got)
	}
	if got := third.loginList(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("logins at the login service's upstream: %v, want [alice]", got)
	}
	if got := moved.loginList(); len(got) != 1 {
		t.Errorf("logins at the front-end's upstream: %v, want only the first", got)
	}
}
