package imap_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/proxy/imap"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

// e2e is Legate's IMAP front-end in front of a real Dovecot.
type e2e struct {
	t       *testing.T
	dc      *testenv.Dovecot
	certs   *testenv.Certs
	st      *bolt.Store
	reg     *session.Registry
	secrets map[string]string // app password name → secret
	ids     map[string]string // app password name → id
	// mutate, when set, changes the options of the front-ends legate
	// starts.
	mutate func(*imap.Options)
}

func newE2E(t *testing.T) *e2e { return newE2EWith(t, testenv.DovecotOptions{}) }

// newE2EWith starts Dovecot with dopts (its Certs set here).
func newE2EWith(t *testing.T, dopts testenv.DovecotOptions) *e2e {
	t.Helper()
	testenv.Require(t, "dovecot", "python3", "curl")
	ctx := context.Background()
	certs := testenv.NewCerts(t)
	dopts.Certs = certs
	e := &e2e{t: t, certs: certs, reg: session.New(), secrets: map[string]string{}, ids: map[string]string{},
		dc: testenv.StartDovecot(t, dopts)}
	st, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(t.TempDir(), "legate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	for _, ap := range []struct {
		name string
		req  store.CreateRequest
	}{
		{"alice", store.CreateRequest{User: "alice"}},
		{"alice-smtp", store.CreateRequest{User: "alice", Scope: []string{"smtp"}}},
		{"alice-old", store.CreateRequest{User: "alice", Expires: time.Now().Add(-time.Hour)}},
		{"alice-revoke", store.CreateRequest{User: "alice"}},
		{"bob", store.CreateRequest{User: "bob"}},
		{"admin", store.CreateRequest{User: "admin"}}, // as if created before admin rights
	} {
		ap.req.Name = ap.name
		rec, secret, err := st.Create(ctx, ap.req)
		if err != nil {
			t.Fatal(err)
		}
		e.secrets[ap.name], e.ids[ap.name] = secret, rec.ID
	}
	return e
}

// legate starts a front-end with an upstream in the given TLS mode and
// login form; it returns the STARTTLS and the implicit-TLS addresses.
func (e *e2e) legate(mode, login string, pol policy.Config) (plainAddr, tlsAddr string) {
	t := e.t
	t.Helper()
	dir, err := directory.NewStatic([]directory.StaticUser{
		{Name: "alice", Addresses: []string{"alice@example.com"}},
		{Name: "bob"},
		{Name: "admin", Admin: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logWriter{t}, nil))
	svc := auth.New(auth.Options{Store: e.st, Directory: dir, Policy: &pol, Logger: log})
	addr := e.dc.IMAPAddr
	if mode == upstream.ModeImplicit {
		addr = e.dc.IMAPSAddr
	}
	opts := imap.Options{
		Auth: svc, Sessions: e.reg, TLS: e.certs.ServerTLS, Logger: log,
		Upstream: &upstream.Config{Address: addr, Mode: mode, Login: login, TLS: e.certs.ClientTLS,
			MasterUser: e.dc.MasterUser, MasterPassword: e.dc.MasterPassword},
	}
	if e.mutate != nil {
		e.mutate(&opts)
	}
	srv := imap.NewServer(opts)
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln1)
	go srv.ServeTLS(ln2)
	t.Cleanup(func() { srv.Close() })
	return ln1.Addr().String(), ln2.Addr().String()
}

// python runs testdata/imap_client.py with secrets in the environment.
// onLine is called with each output line as it comes.
func (e *e2e) python(addr, tlsMode, user, secret, authMode, action string, onLine func(string)) []string {
	t := e.t
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "testdata/imap_client.py")
	cmd.Env = append(os.Environ(), "IMAP_HOST="+host, "IMAP_PORT="+port, "IMAP_TLS="+tlsMode,
		"IMAP_CAFILE="+e.certs.CAFile, "IMAP_USER="+user, "IMAP_PASS="+secret, "IMAP_AUTH="+authMode,
		"IMAP_ACTION="+action)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		l := sc.Text()
		t.Logf("python: %s", l)
		lines = append(lines, l)
		if onLine != nil {
			onLine(l)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python %s: %v\n%s", action, err, stderr.String())
	}
	return lines
}

// curl runs curl with the credentials in a config read from stdin.
func (e *e2e) curl(url, user, secret string, extra ...string) string {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-sS", "--cacert", e.certs.CAFile, "-K", "-", url}, extra...)
	cmd := exec.CommandContext(ctx, "curl", args...)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("user = \"%s:%s\"\n", user, secret))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	return string(out)
}

func has(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestE2EDovecot(t *testing.T) {
	e := newE2E(t)
	pol := policy.Default()
	tests := []struct {
		mode, login, clientTLS, auth string
	}{
		{upstream.ModeSTARTTLS, upstream.LoginAuthzid, "starttls", "login"},
		{upstream.ModeSTARTTLS, upstream.LoginSeparator, "imaps", "plain"},
		{upstream.ModeImplicit, upstream.LoginAuthzid, "imaps", "login"},
		{upstream.ModeImplicit, upstream.LoginSeparator, "starttls", "plain"},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("upstream %s %s, client %s %s", tt.mode, tt.login, tt.clientTLS, tt.auth)
		t.Run(name, func(t *testing.T) {
			e.t = t
			plainAddr, tlsAddr := e.legate(tt.mode, tt.login, pol)
			addr := plainAddr
			if tt.clientTLS == "imaps" {
				addr = tlsAddr
			}
			before := e.dc.LoginCount("alice")
			delivered := false
			lines := e.python(addr, tt.clientTLS, "alice", e.secrets["alice"], tt.auth, "session", func(l string) {
				if l == "IDLING" && !delivered {
					delivered = true
					e.dc.Deliver("alice", "From: bob@example.com\r\nSubject: while idle\r\n\r\nhello\r\n")
				}
			})
			for _, want := range []string{"OK ", "APPENDED ", "FETCHED ", "EXISTS ", "IDLE-END "} {
				if !has(lines, want) {
					t.Errorf("python output lacks %q: %q", want, lines)
				}
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "FETCHED ") && !strings.HasSuffix(l, "identical=True") {
					t.Errorf("got %q, want the 10 MB message back byte-identical", l)
				}
			}
			if _, err := e.dc.WaitLoginCount(context.Background(), "alice", before+1); err != nil {
				t.Errorf("dovecot logins of alice: %v", err)
			}

			// curl: list mailboxes and fetch a message.
			scheme, opt := "imap", "--ssl-reqd"
			if tt.clientTLS == "imaps" {
				scheme, opt = "imaps", "--ssl-reqd"
			}
			list := e.curl(scheme+"://"+addr+"/", "alice", e.secrets["alice"], opt)
			if !strings.Contains(list, "INBOX") {
				t.Errorf("curl list: got %q, want INBOX", list)
			}
			msg := e.curl(scheme+"://"+addr+"/INBOX;MAILINDEX=1", "alice", e.secrets["alice"], opt)
			if !strings.Contains(msg, "Subject:") {
				t.Errorf("curl fetch: got %q..., want a message", msg[:min(len(msg), 200)])
			}
		})
	}
	e.t = t
}

func TestE2EDenials(t *testing.T) {
	e := newE2E(t)
	pol := policy.Default()
	pol.BlockedUsers = []string{"bob"}
	pol.UserProtocols = map[string][]string{"alice": {"imap", "smtp"}, "bob": {"imap"}}
	plainAddr, _ := e.legate(upstream.ModeSTARTTLS, upstream.LoginAuthzid, pol)
	polOff := policy.Default()
	polOff.Protocols = []string{"smtp", "ldap"}
	offAddr, _ := e.legate(upstream.ModeSTARTTLS, upstream.LoginAuthzid, polOff)
	tests := []struct {
		name, addr, user, secret, want string
	}{
		{"bad password", plainAddr, "alice", "ABCD-EFGH-JKMN-PQRS", "NO [AUTHENTICATIONFAILED] Authentication failed"},
		{"admin", plainAddr, "admin", e.secrets["admin"], "NO [AUTHORIZATIONFAILED] "},
		{"blocked user", plainAddr, "bob", e.secrets["bob"], "NO [AUTHORIZATIONFAILED] "},
		{"protocol off", offAddr, "alice", e.secrets["alice"], "NO [AUTHORIZATIONFAILED] "},
		{"out of scope", plainAddr, "alice", e.secrets["alice-smtp"], "NO [AUTHORIZATIONFAILED] "},
		{"expired", plainAddr, "alice", e.secrets["alice-old"], "NO [EXPIRED] "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			before := e.dc.LoginCount(tt.user)
			for _, mode := range []string{"login", "plain"} {
				lines := e.python(tt.addr, "starttls", tt.user, tt.secret, mode, "login", nil)
				if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.want) {
					t.Errorf("%s: got %q, want one line starting %q", mode, lines, tt.want)
				}
			}
			time.Sleep(300 * time.Millisecond) // Dovecot logs asynchronously
			if got := e.dc.LoginCount(tt.user); got != before {
				t.Errorf("dovecot logins of %s: got %d, want %d (unchanged)", tt.user, got, before)
			}
		})
	}
	e.t = t
}

func TestE2ERevocationClosesIdleSession(t *testing.T) {
	e := newE2E(t)
	addr, _ := e.legate(upstream.ModeSTARTTLS, upstream.LoginAuthzid, policy.Default())
	var revokedAt time.Time
	lines := e.python(addr, "starttls", "alice", e.secrets["alice-revoke"], "login", "revoke", func(l string) {
		if l != "IDLING" {
			return
		}
		if _, err := e.st.Revoke(context.Background(), "alice", store.Selector{ID: e.ids["alice-revoke"]}); err != nil {
			t.Errorf("revoke: %v", err)
		}
		revokedAt = time.Now()
		if n := e.reg.KillAppPasswords(e.ids["alice-revoke"]); n != 1 {
			t.Errorf("KillAppPasswords: got %d, want 1", n)
		}
	})
	if !has(lines, "LINE * BYE Session revoked") {
		t.Errorf("python output %q lacks the BYE", lines)
	}
	took, closed := 0.0, false
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "CLOSED after "); ok {
			// "0.000" is a fast close, not a missing one.
			_, err := fmt.Sscanf(v, "%g", &took)
			closed = err == nil
		}
	}
	if !closed || took > 1.0 || revokedAt.IsZero() {
		t.Errorf("IDLE session closed after %gs, want within 1s of revocation", took)
	}
	// The revoked password no longer logs in.
	lines = e.python(addr, "starttls", "alice", e.secrets["alice-revoke"], "login", "login", nil)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("login after revocation: got %q, want NO [AUTHENTICATIONFAILED]", lines)
	}
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
