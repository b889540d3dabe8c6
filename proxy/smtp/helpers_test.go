package smtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

// ---- fake upstream: an in-test go-smtp server that records what it got ----

type upMsg struct {
	Identity string
	From     string
	MailOpts gosmtp.MailOptions
	To       []string
	RcptOpts []gosmtp.RcptOptions
	Data     []byte // first 1 MiB
	Len      int64
	SHA      [32]byte
}

type fakeUpstream struct {
	Addr             string
	master, masterPW string
	// rejectRcpt maps recipients to the error the upstream answers.
	rejectRcpt map[string]*gosmtp.SMTPError
	// rejectMail maps senders to the error the upstream answers.
	rejectMail map[string]*gosmtp.SMTPError

	mu      sync.Mutex
	msgs    []upMsg
	aborted int
	logins  []string
	conns   atomic.Int32 // sessions created
	live    atomic.Int32 // sessions not yet logged out
}

func startUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{master: "legate", masterPW: "master-secret-pw",
		rejectRcpt: map[string]*gosmtp.SMTPError{
			"nobody@example.net": {Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "User unknown in virtual mailbox table"},
		},
		rejectMail: map[string]*gosmtp.SMTPError{
			"refused@example.com": {Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Sender address rejected by upstream"},
		}}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		u.conns.Add(1)
		u.live.Add(1)
		return &upSession{u: u}, nil
	}))
	srv.Domain = "upstream.test"
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.MaxMessageBytes = 100 << 20
	srv.ErrorLog = discardLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return u
}

func (u *fakeUpstream) messages() []upMsg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upMsg(nil), u.msgs...)
}

func (u *fakeUpstream) abortedCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.aborted
}

type upSession struct {
	u        *fakeUpstream
	identity string
	cur      upMsg
}

func (s *upSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *upSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if user, ok := strings.CutSuffix(username, "*"+s.u.master); ok && identity == "" {
			identity, username = user, s.u.master // separator form user*master
		}
		if username != s.u.master || password != s.u.masterPW || identity == "" {
			return gosmtp.ErrAuthFailed
		}
		s.identity = identity
		s.u.mu.Lock()
		s.u.logins = append(s.u.logins, identity)
		s.u.mu.Unlock()
		return nil
	}), nil
}
func (s *upSession) Reset()        { s.cur = upMsg{} }
func (s *upSession) Logout() error { s.u.live.Add(-1); return nil }
func (s *upSession) Mail(from string, opts *gosmtp.MailOptions) error {
	if s.identity == "" {
		return gosmtp.ErrAuthRequired
	}
	if e := s.u.rejectMail[from]; e != nil {
		return e
	}
	s.cur = upMsg{Identity: s.identity, From: from}
	if opts != nil {
		s.cur.MailOpts = *opts
	}
	return nil
}
func (s *upSession) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if e := s.u.rejectRcpt[to]; e != nil {
		return e
	}
	s.cur.To = append(s.cur.To, to)
	if opts != nil {
		s.cur.RcptOpts = append(s.cur.RcptOpts, *opts)
	}
	return nil
}
func (s *upSession) Data(r io.Reader) error {
	h := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &limitedBuffer{&head, 1 << 20}), r)
	if err != nil {
		s.u.mu.Lock()
		s.u.aborted++
		s.u.mu.Unlock()
		return err
	}
	s.cur.Len = n
	copy(s.cur.SHA[:], h.Sum(nil))
	s.cur.Data = head.Bytes()
	s.u.mu.Lock()
	s.u.msgs = append(s.u.msgs, s.cur)
	s.u.mu.Unlock()
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as UPQ123"}
}

// discardLog drops the fake upstream's go-smtp error log.
type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// ---- the proxy under test with a real auth.Service over a real store ----

type fakeThrottle struct{}

func (fakeThrottle) Check(ip netip.Addr, user string) (time.Duration, bool) {
	return 0, user == "carol"
}
func (fakeThrottle) Failure(netip.Addr, string) {}
func (fakeThrottle) Success(netip.Addr, string) {}

type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

type env struct {
	t       *testing.T
	srv     *Server
	addr    string // STARTTLS listener
	tlsAddr string // implicit TLS listener
	up      *fakeUpstream
	reg     *session.Registry
	certs   *testenv.Certs
	clock   *clock
	store   *bolt.Store
	logs    *logintest.LogBuffer
	// secrets of app passwords by user
	secret  map[string]string
	expired string // alice's app password that expires in an hour
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newEnv starts the fake upstream, the login service and the proxy on
// 127.0.0.1. mod may change the options before the server starts.
func newEnv(t *testing.T, mod ...func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, up: startUpstream(t), reg: session.New(), certs: testenv.NewCerts(t),
		clock: &clock{}, logs: &logintest.LogBuffer{}, secret: map[string]string{}}
	st, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(t.TempDir(), "legate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	dir, err := directory.NewStatic([]directory.StaticUser{
		{Name: "alice", Addresses: []string{"alice@example.com", "Alice.Smith@Example.org"}},
		{Name: "bob", Addresses: []string{"bob@example.com"}},
		{Name: "carol", Addresses: []string{"carol@example.com"}},
		{Name: "dave", Addresses: []string{"dave@example.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		_, sec, err := st.Create(ctx, store.CreateRequest{User: u, Name: "laptop"})
		if err != nil {
			t.Fatal(err)
		}
		e.secret[u] = sec
	}
	_, sec, err := st.Create(ctx, store.CreateRequest{User: "alice", Name: "old", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.expired = sec
	_, sec, err = st.Create(ctx, store.CreateRequest{User: "dave", Name: "imap-only", Scope: []string{policy.IMAP}})
	if err != nil {
		t.Fatal(err)
	}
	e.secret["dave"] = sec
	pol := policy.Default()
	pol.BlockedUsers = []string{"bob"}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, tlogWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := auth.New(auth.Options{Store: st, Directory: dir, Policy: &pol, Throttle: fakeThrottle{},
		Logger: logger, Now: e.clock.Now})
	opts := Options{
		Auth: svc, Sessions: e.reg, TLS: e.certs.ServerTLS, Logger: logger, Domain: "legate.test",
		Upstream: &upstream.Config{Address: e.up.Addr, Mode: upstream.ModeNone,
			MasterUser: e.up.master, MasterPassword: e.up.masterPW, DialTimeout: 2 * time.Second, IOTimeout: 5 * time.Second},
	}
	for _, m := range mod {
		m(&opts)
	}
	e.srv = NewServer(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr, e.tlsAddr = ln.Addr().String(), tln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = e.srv.Serve(ln) }()
	go func() { defer wg.Done(); _ = e.srv.ServeTLS(tln) }()
	t.Cleanup(func() {
		e.srv.Close()
		wg.Wait()
		for u, s := range e.secret {
			if strings.Contains(e.logs.String(), s) {
				t.Errorf("log contains %s's secret", u)
			}
		}
	})
	return e
}

// ---- raw protocol client ----

type rawClient struct {
	t    testing.TB
	conn net.Conn
	tp   *textproto.Conn
}

func (e *env) dialRaw() *rawClient {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	rc := &rawClient{t: e.t, conn: c, tp: textproto.NewConn(c)}
	e.t.Cleanup(func() { c.Close() })
	rc.expect(220, "")
	return rc
}

// dialAuthed connects with STARTTLS and authenticates as user.
func (e *env) dialAuthed(user string) *rawClient {
	e.t.Helper()
	rc := e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	rc.startTLS(e.certs.ClientTLS)
	rc.cmd("EHLO client.test", 250, "AUTH PLAIN LOGIN")
	rc.cmd("AUTH PLAIN "+plainIR("", user, e.secret[user]), 235, "")
	return rc
}

func (rc *rawClient) startTLS(cfg *tls.Config) {
	rc.t.Helper()
	rc.cmd("STARTTLS", 220, "")
	tc := tls.Client(rc.conn, cfg)
	if err := tc.Handshake(); err != nil {
		rc.t.Fatalf("tls handshake: %v", err)
	}
	rc.conn = tc
	rc.tp = textproto.NewConn(tc)
}

// cmd sends a line and checks the reply code and that the reply contains
// want.
func (rc *rawClient) cmd(line string, code int, want string) string {
	rc.t.Helper()
	_ = rc.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := rc.tp.PrintfLine("%s", line); err != nil {
		rc.t.Fatalf("send %q: %v", redact(line), err)
	}
	return rc.expectFor(redact(line), code, want)
}

func (rc *rawClient) expect(code int, want string) string {
	rc.t.Helper()
	return rc.expectFor("(greeting)", code, want)
}

func (rc *rawClient) expectFor(what string, code int, want string) string {
	rc.t.Helper()
	_ = rc.conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, msg, err := rc.tp.ReadResponse(0)
	if err != nil && got == 0 {
		rc.t.Fatalf("%s: read reply: %v", what, err)
	}
	full := msg
	if got != code || !strings.Contains(full, want) {
		rc.t.Fatalf("%s: got %d %q, want %d containing %q", what, got, full, code, want)
	}
	return full
}

func redact(line string) string {
	if strings.HasPrefix(strings.ToUpper(line), "AUTH ") {
		return "AUTH ..."
	}
	return line
}

func plainIR(authzid, user, pass string) string {
	return b64(authzid + "\x00" + user + "\x00" + pass)
}

// expectClosed checks that the server closes the connection within d.
func (rc *rawClient) expectClosed(d time.Duration) {
	rc.t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := rc.conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				rc.t.Fatalf("connection still open after %v", d)
			}
			return
		}
	}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
