// Package systemtest holds system tests of the hardening floor (docs/contract.md §7):
// the whole daemon, assembled by daemon.Start from a config.Config built in
// code, in front of real upstreams from internal/testenv (Dovecot with
// submission relaying to smtp-sink, and slapd), driven by real clients.
//
// The package has no production code: this file holds the helpers the tests
// share (StartUpstreams, StartLegate, a raw IMAP client, process
// measurements). Tests that need a real server call testenv.Require (through
// the testenv Start functions): they skip locally when a binary is missing
// and fail when CI=true. LEGATE_SOAK=1 makes the soak test big.
package systemtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/daemon"
	"github.com/legate-proxy/legate/internal/testenv"
)

// Upstreams are the real servers Legate is put in front of. A nil field is
// a server that was not started.
type Upstreams struct {
	Dovecot *testenv.Dovecot // IMAP, and submission relaying to Sink
	Sink    *testenv.Sink
	Slapd   *testenv.Slapd
}

// UpstreamOptions say which real servers to start.
type UpstreamOptions struct {
	// Mail starts smtp-sink and Dovecot (IMAP and submission).
	Mail bool
	// LDAP starts slapd; Legate then uses it as directory and LDAP upstream.
	LDAP bool
}

// StartUpstreams starts the requested servers; they stop when the test ends.
func StartUpstreams(t testing.TB, o UpstreamOptions) *Upstreams {
	t.Helper()
	u := &Upstreams{}
	if o.Mail {
		testenv.Require(t, "dovecot", "smtp-sink")
		u.Sink = testenv.StartSink(t)
		u.Dovecot = testenv.StartDovecot(t, testenv.DovecotOptions{Submission: true, RelayAddr: u.Sink.Addr})
	}
	if o.LDAP {
		testenv.Require(t, "slapd", "slapadd")
		u.Slapd = testenv.StartSlapd(t, testenv.SlapdOptions{})
	}
	return u
}

// LegateOptions configure StartLegate. The zero value starts IMAP, IMAPS,
// submission, submissions, LDAP and LDAPS listeners on 127.0.0.1:0 with a
// static directory (alice, bob, dave [disabled], root [admin]) and upstream
// addresses that are never dialled.
type LegateOptions struct {
	// Upstreams, if set, are what Legate logs in to; with Slapd set the
	// directory is type ldap (alice, bob, carol [disabled], root [admin]).
	Upstreams *Upstreams
	// Admin creates the admin socket (Legate.AdminSocket).
	Admin bool
	// Mutate changes the configuration before the daemon starts.
	Mutate func(cfg *config.Config)
	// LogLimit bounds Legate.Logs to about its last LogLimit bytes (long
	// runs that measure memory); zero keeps every line.
	LogLimit int
}

// Legate is a running daemon with what the tests need to reach it.
type Legate struct {
	*daemon.Daemon
	Config *config.Config
	// Certs is Legate's own server certificate; Certs.ClientTLS trusts it.
	Certs *testenv.Certs
	// Dir holds the database, key files and secret files.
	Dir string
	// AdminSocket is the admin socket path ("" unless LegateOptions.Admin).
	AdminSocket string
	// Logs holds everything the daemon logged (debug level, text format).
	Logs *SyncBuffer
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes.
type SyncBuffer struct {
	// Max, if positive, bounds the buffer: it keeps about the last Max
	// bytes (at most 2*Max); zero keeps everything.
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Max > 0 && s.b.Len()+len(p) > 2*s.Max {
		keep := s.b.Bytes()[max(0, s.b.Len()-s.Max):]
		kept := append([]byte(nil), keep...)
		s.b.Reset()
		s.b.Write(kept)
	}
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// unusedUpstream is an address nothing listens on: configured upstreams
// that a test never reaches (refusals happen before the upstream dial).
const unusedUpstream = "127.0.0.1:1"

// StartLegate builds a configuration in code and starts the daemon; it is
// closed when the test ends (and its log tail printed if the test failed).
func StartLegate(t testing.TB, o LegateOptions) *Legate {
	t.Helper()
	dir := t.TempDir()
	lg := &Legate{Certs: testenv.NewCerts(t), Dir: dir, Logs: &SyncBuffer{Max: o.LogLimit}}
	cfg := config.Default()
	const lo = "127.0.0.1:0"
	cfg.Listen = config.Listen{IMAP: lo, IMAPS: lo, Submission: lo, Submissions: lo, LDAP: lo, LDAPS: lo}
	if o.Admin {
		lg.AdminSocket = filepath.Join(dir, "admin.sock")
		cfg.Listen.Admin = lg.AdminSocket
	}
	cfg.TLS = config.TLS{CertFile: lg.Certs.CertFile, KeyFile: lg.Certs.KeyFile}
	cfg.Storage.Path = filepath.Join(dir, "legate.db")
	cfg.Storage.KeyFile = filepath.Join(dir, "hmac.key")
	cfg.Log.Level = "debug"
	cfg.Limits.DialTimeout = config.Duration(3 * time.Second)
	cfg.Limits.ShutdownGrace = config.Duration(2 * time.Second)

	u := o.Upstreams
	if u == nil {
		u = &Upstreams{}
	}
	unused := config.UpstreamMail{Address: unusedUpstream, TLS: config.TLSNone, MasterUser: "legate",
		Login: config.LoginAuthzid, Separator: "*"}
	cfg.Upstream.IMAP, cfg.Upstream.SMTP = unused, unused
	cfg.Upstream.LDAP = config.UpstreamLDAP{Address: unusedUpstream, TLS: config.TLSNone, PoolSize: 2, Authz: config.AuthzProxied}
	if dc := u.Dovecot; dc != nil {
		pw := writeSecret(t, dir, "mail-master.secret", dc.MasterPassword)
		mail := func(addr, mode string) config.UpstreamMail {
			return config.UpstreamMail{Address: addr, TLS: mode, CAFile: dc.CAFile, ServerName: "localhost",
				MasterUser: dc.MasterUser, MasterPasswordFile: pw, Login: config.LoginAuthzid, Separator: "*"}
		}
		cfg.Upstream.IMAP = mail(dc.IMAPSAddr, config.TLSImplicit)
		cfg.Upstream.SMTP = mail(dc.SubmissionAddr, config.TLSStartTLS)
	}
	if s := u.Slapd; s != nil {
		pw := writeSecret(t, dir, "ldap.secret", s.ServicePassword)
		cfg.Upstream.LDAP = config.UpstreamLDAP{Address: s.LDAPSAddr, TLS: config.TLSImplicit, CAFile: s.CAFile,
			ServerName: "localhost", BindDN: s.ServiceDN, BindPasswordFile: pw, PoolSize: 4, Authz: config.AuthzProxied}
		cfg.Directory.Type = "ldap"
		cfg.Directory.LDAP = config.LDAPDirectory{BaseDN: "ou=people," + s.BaseDN, UserFilter: "(uid=%s)",
			NameAttribute: "uid", MailAttributes: []string{"mail"}, GroupAttribute: "memberOf",
			AdminGroups: []string{s.GroupDN("admins")}, DisabledFilter: "(pwdAccountLockedTime=*)",
			PasswordChangedAttribute: "pwdChangedTime"}
	} else {
		cfg.Directory.Type = "static"
		cfg.Directory.Static.Users = []config.User{
			{Name: "alice", Addresses: []string{"alice@example.com"}, Groups: []string{"staff"}},
			{Name: "bob", Addresses: []string{"bob@example.com"}, Groups: []string{"staff"}},
			{Name: "dave", Addresses: []string{"dave@example.com"}, Disabled: true},
			{Name: "root", Addresses: []string{"root@example.com"}, Admin: true},
		}
	}
	if o.Mutate != nil {
		o.Mutate(cfg)
	}
	lg.Config = cfg
	log := daemon.NewLogger(cfg, lg.Logs)
	d, err := daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("daemon.Start: %v\nlogs:\n%s", err, lg.Logs)
	}
	lg.Daemon = d
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("daemon shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("legate log (tail):\n%s", tailLines(lg.Logs.String(), 40))
		}
	})
	return lg
}

// CreateAppPassword creates an app password through the control layer (what
// the CLI and the admin socket call) and returns it in display form.
func (lg *Legate) CreateAppPassword(t testing.TB, user, name string) string {
	t.Helper()
	c, err := lg.Control().CreateAppPassword(context.Background(), control.CreateArgs{User: user, Name: name, Via: "cli"})
	if err != nil {
		t.Fatalf("create app password for %s: %v", user, err)
	}
	return c.Secret
}

// AddrOf returns the bound address of listener key ("imap", "ldaps", ...).
func (lg *Legate) AddrOf(t testing.TB, key string) string {
	t.Helper()
	a := lg.Addr(key)
	if a == nil {
		t.Fatalf("listener %s is not running", key)
	}
	return a.String()
}

// ClientTLS returns a client configuration that trusts Legate's certificate.
func (lg *Legate) ClientTLS() *tls.Config { return lg.Certs.ClientTLS.Clone() }

func writeSecret(t testing.TB, dir, name, secret string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// discardLogger drops everything.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// RawIMAP is a line-level IMAP client, to see the exact bytes Legate sends.
type RawIMAP struct {
	Conn net.Conn
	r    *bufio.Reader
}

// DialIMAP connects to addr (over implicit TLS when tc is set) and reads the
// greeting.
func DialIMAP(t testing.TB, addr string, tc *tls.Config) (*RawIMAP, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	if tc != nil {
		c = tls.Client(c, tc)
	}
	t.Cleanup(func() { c.Close() })
	ic := &RawIMAP{Conn: c, r: bufio.NewReader(c)}
	greeting, err := ic.ReadLine(10 * time.Second)
	if err != nil {
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	return ic, greeting
}

// ReadLine reads one line (without CRLF) within timeout.
func (c *RawIMAP) ReadLine(timeout time.Duration) (string, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := c.r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// Command sends "tag line" and returns the tagged answer (without the tag)
// and the untagged lines before it.
func (c *RawIMAP) Command(tag, line string, timeout time.Duration) (string, []string, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c.Conn, "%s %s\r\n", tag, line); err != nil {
		return "", nil, err
	}
	var untagged []string
	for {
		l, err := c.ReadLine(timeout)
		if err != nil {
			return "", untagged, err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return rest, untagged, nil
		}
		untagged = append(untagged, l)
	}
}

// Login sends LOGIN with quoted strings and returns the tagged answer.
func (c *RawIMAP) Login(tag, user, pass string, timeout time.Duration) (string, error) {
	ans, _, err := c.Command(tag, fmt.Sprintf("LOGIN %q %q", user, pass), timeout)
	return ans, err
}

// RawSMTP is a line-level SMTP client over implicit TLS, to stop in the
// middle of DATA or hold an authenticated session idle.
type RawSMTP struct {
	Conn net.Conn
	r    *textproto.Reader
}

// DialSMTPS connects to a submissions listener and reads the 220 greeting.
func DialSMTPS(t testing.TB, addr string, tc *tls.Config) *RawSMTP {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	sc := &RawSMTP{Conn: c, r: textproto.NewReader(bufio.NewReader(c))}
	if code, msg, err := sc.Reply(10 * time.Second); err != nil || code != 220 {
		t.Fatalf("greeting from %s: %d %s (%v), want 220", addr, code, msg, err)
	}
	return sc
}

// Reply reads one (possibly multi-line) reply within timeout.
func (c *RawSMTP) Reply(timeout time.Duration) (int, string, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	return c.r.ReadResponse(0)
}

// Cmd sends one command line and reads its reply.
func (c *RawSMTP) Cmd(line string, timeout time.Duration) (int, string, error) {
	if err := c.Write(line+"\r\n", timeout); err != nil {
		return 0, "", err
	}
	return c.Reply(timeout)
}

// Write sends raw bytes (a part of a message in DATA).
func (c *RawSMTP) Write(s string, timeout time.Duration) error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := io.WriteString(c.Conn, s)
	return err
}

// Login sends EHLO and AUTH PLAIN and fails the test unless it gets 235.
func (c *RawSMTP) Login(t testing.TB, user, pass string) {
	t.Helper()
	if code, msg, err := c.Cmd("EHLO client.example", 10*time.Second); err != nil || code != 250 {
		t.Fatalf("EHLO: %d %s (%v), want 250", code, msg, err)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	if code, msg, err := c.Cmd("AUTH PLAIN "+ir, 10*time.Second); err != nil || code != 235 {
		t.Fatalf("AUTH PLAIN as %s: %d %s (%v), want 235", user, code, msg, err)
	}
}

// OIDNoticeOfDisconnection names the unsolicited LDAP extended response a
// server sends before it closes a connection (RFC 4511 §4.4.1).
const OIDNoticeOfDisconnection = "1.3.6.1.4.1.1466.20036"

// RawLDAP is a message-level LDAP client over implicit TLS, to see
// unsolicited notifications that client libraries swallow.
type RawLDAP struct {
	Conn net.Conn
	next int64
}

// DialLDAPS connects to an LDAPS listener.
func DialLDAPS(t testing.TB, addr string, tc *tls.Config) *RawLDAP {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &RawLDAP{Conn: c}
}

// Bind sends a simple bind and returns the result code.
func (c *RawLDAP) Bind(name, pass string, timeout time.Duration) (int, error) {
	c.next++
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, c.next, ""))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "") // BindRequest
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(3), ""))
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, ""))
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, pass, ""))
	env.AppendChild(req)
	_ = c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Conn.Write(env.Bytes()); err != nil {
		return 0, err
	}
	p, err := c.Read(timeout)
	if err != nil {
		return 0, err
	}
	if len(p.Children) < 2 || p.Children[1].Tag != 1 || len(p.Children[1].Children) < 1 {
		return 0, fmt.Errorf("ldap: not a BindResponse: %s", ber.DescribePacket(p))
	}
	code, ok := p.Children[1].Children[0].Value.(int64)
	if !ok {
		return 0, fmt.Errorf("ldap: BindResponse without a result code")
	}
	return int(code), nil
}

// Read reads one LDAP message within timeout.
func (c *RawLDAP) Read(timeout time.Duration) (*ber.Packet, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	return ber.ReadPacket(c.Conn)
}

// NoticeOfDisconnection reports whether p is the unsolicited Notice of
// Disconnection (message ID 0, ExtendedResponse named by its OID).
func NoticeOfDisconnection(p *ber.Packet) bool {
	if p == nil || len(p.Children) < 2 {
		return false
	}
	if id, _ := p.Children[0].Value.(int64); id != 0 {
		return false
	}
	op := p.Children[1]
	if op.ClassType != ber.ClassApplication || op.Tag != 24 { // ExtendedResponse
		return false
	}
	for _, ch := range op.Children {
		if ch.ClassType == ber.ClassContext && ch.Tag == 10 && string(ch.Data.Bytes()) == OIDNoticeOfDisconnection {
			return true
		}
	}
	return false
}
