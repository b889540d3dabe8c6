package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
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
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

// env is a Legate IMAP front-end over a real auth.Service and bolt store,
// in front of a fake upstream.
type env struct {
	t     testing.TB
	st    *bolt.Store
	auth  *auth.Service
	reg   *session.Registry
	fake  *fakeUpstream
	srv   *Server
	addr  string // plaintext listener
	addrS string // implicit-TLS listener
	certs *testenv.Certs
	// secrets of app passwords by name: "alice" (all protocols).
	secret map[string]string
	apID   map[string]string
}

type envOptions struct {
	policy   *policy.Config
	fake     fakeConfig
	mutate   func(*Options)
	throttle auth.Throttler
	// upMode is the upstream TLS mode: none, starttls (default) or implicit.
	upMode string
}

// testLogger sends logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func newEnv(t testing.TB, eo envOptions) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, certs: testenv.NewCerts(t), secret: map[string]string{}, apID: map[string]string{}}
	st, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(t.TempDir(), "legate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	dir, err := directory.NewStatic([]directory.StaticUser{
		{Name: "alice", Addresses: []string{"alice@example.com"}},
		{Name: "bob"},
		{Name: "root", Admin: true},
		{Name: "carol"},
	})
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.RequireTLS = false
	if eo.policy != nil {
		pol = *eo.policy
	}
	e.auth = auth.New(auth.Options{Store: st, Directory: dir, Policy: &pol, Throttle: eo.throttle, Logger: testLogger(t)})
	e.reg = session.New()

	for _, ap := range []struct {
		name, user string
		req        store.CreateRequest
	}{
		{"alice", "alice", store.CreateRequest{}},
		{"alice-smtp", "alice", store.CreateRequest{Scope: []string{"smtp"}}},
		{"alice-old", "alice", store.CreateRequest{Expires: time.Now().Add(-time.Hour)}},
		{"bob", "bob", store.CreateRequest{}},
		{"carol", "carol", store.CreateRequest{}},
		{"root", "root", store.CreateRequest{}}, // bypassing the CLI's admin check
	} {
		ap.req.User, ap.req.Name = ap.user, ap.name
		rec, secret, err := st.Create(ctx, ap.req)
		if err != nil {
			t.Fatalf("create %s: %v", ap.name, err)
		}
		e.secret[ap.name], e.apID[ap.name] = secret, rec.ID
	}

	mode := eo.upMode
	if mode == "" {
		mode = upstream.ModeSTARTTLS
	}
	var upTLS *tls.Config
	if mode != upstream.ModeNone {
		upTLS = e.certs.ServerTLS
	}
	e.fake = startFake(t, eo.fake, upTLS, mode == upstream.ModeImplicit)
	up := &upstream.Config{Address: e.fake.addr(), Mode: mode, MasterUser: e.fake.masterUser,
		MasterPassword: e.fake.masterPass, TLS: e.certs.ClientTLS, DialTimeout: 2 * time.Second, IOTimeout: 2 * time.Second}
	opts := Options{Auth: e.auth, Sessions: e.reg, Upstream: up, TLS: e.certs.ServerTLS, Logger: testLogger(t)}
	if eo.mutate != nil {
		eo.mutate(&opts)
	}
	e.srv = NewServer(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr, e.addrS = ln.Addr().String(), lnS.Addr().String()
	errc := make(chan error, 2)
	go func() { errc <- e.srv.Serve(ln) }()
	go func() { errc <- e.srv.ServeTLS(lnS) }()
	t.Cleanup(func() {
		e.srv.Close()
		for range 2 {
			if err := <-errc; err != ErrServerClosed {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return e
}

// client is a line-oriented IMAP test client.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (e *env) dial() *client {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &client{t: e.t, c: c, br: bufio.NewReader(c)}
}

func (e *env) dialTLS() *client {
	e.t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", e.addrS, e.certs.ClientTLS)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &client{t: e.t, c: c, br: bufio.NewReader(c)}
}

// readLine reads one line (without CRLF) within 3s.
func (c *client) readLine() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: got error %v (partial %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) send(s string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expect reads one line and checks its prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.readLine()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got line %q, want prefix %q", l, prefix)
	}
	return l
}

// expectClosed checks the server closes the connection within d.
func (c *client) expectClosed(d time.Duration) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c.br)
	if err != nil {
		c.t.Fatalf("connection not closed within %v: %v (read %q)", d, err, b)
	}
	if len(b) > 0 {
		c.t.Fatalf("got %q before close, want nothing", b)
	}
}

// startTLS upgrades the client after STARTTLS.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.send("s STARTTLS\r\n")
	c.expect("s OK")
	tc := tls.Client(c.c, cfg)
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("client handshake: %v", err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
}

// fixedThrottle blocks every login.
type fixedThrottle struct{}

func (fixedThrottle) Check(netip.Addr, string) (time.Duration, bool) { return 0, true }
func (fixedThrottle) Failure(netip.Addr, string)                     {}
func (fixedThrottle) Success(netip.Addr, string)                     {}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
