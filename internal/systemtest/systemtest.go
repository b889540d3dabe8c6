// Package systemtest holds system tests of the hardening floor (SPEC §7):
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
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
