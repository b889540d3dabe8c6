package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DovecotOptions configures StartDovecot. The zero value starts IMAP and
// IMAPS with the default users and a random master password.
type DovecotOptions struct {
	// Users maps user name to password; nil means DefaultUsers(). Names
	// and passwords must not contain ':', '/', '*' or control characters.
	Users map[string]string
	// MasterUser is the master (service) user; "" means "legate".
	MasterUser string
	// MasterPassword is the master user's password; "" means random.
	MasterPassword string
	// Submission also starts the submission service (plain+STARTTLS and
	// implicit TLS), relaying to RelayAddr.
	Submission bool
	// RelayAddr is the SMTP server ("127.0.0.1:port", plain SMTP, no auth)
	// that submission relays to, typically a Sink's Addr. Required when
	// Submission is set.
	RelayAddr string
	// Certs is the server certificate; nil means NewCerts(t).
	Certs *Certs
	// MaxUserIPConnections is mail_max_userip_connections; zero means
	// 1000 (Dovecot's default of 10 is too low for a proxy that connects
	// every session from one IP).
	MaxUserIPConnections int
	// TrustedNetworks is login_trusted_networks (clients there may send
	// the real client IP with ID / XCLIENT); "" means none.
	TrustedNetworks string
	// AuthPenalty keeps Dovecot's auth penalty: after a failed login from
	// an IP, the next logins from that IP (any user) wait 2 s, growing to
	// 15 s. Off by default so tests of wrong passwords stay fast. Note
	// that every proxied login comes from the proxy's IP.
	AuthPenalty bool
	// OAuth2Introspection, if set, accepts XOAUTH2 and OAUTHBEARER tokens
	// through Dovecot's passdb oauth2: each token is introspected (RFC
	// 7662, POST) at this URL, which may carry the resource server's
	// credentials ("http://id:secret@127.0.0.1:port/path"), and its
	// username must equal the login's user (Google's per-user tokens).
	OAuth2Introspection string
	// OAuth2Checkpassword, if set, accepts XOAUTH2 and OAUTHBEARER tokens
	// through a checkpassword passdb running this program, which gets
	// the user and the token (Dovecot hands the token to the passdb as
	// the password): a script can check an app-only token against a
	// per-mailbox grant table, as Exchange Online does.
	OAuth2Checkpassword string
	// AuthCache turns on Dovecot's auth cache (10M, 1 hour): a login
	// repeated with the same user and password (or token) skips the
	// passdb, as on production servers.
	AuthCache bool
	// Checkpassword, when set, replaces the users' passwd-file passdb with
	// a checkpassword passdb running this command line (Dovecot appends
	// its checkpassword-reply); the master-user passdb stays.
	Checkpassword string
}

// DefaultUsers returns the users StartDovecot creates when
// DovecotOptions.Users is nil: alice, bob and admin.
func DefaultUsers() map[string]string {
	return map[string]string{
		"alice": "alice-upstream-pw",
		"bob":   "bob-upstream-pw",
		"admin": "admin-upstream-pw",
	}
}

// Dovecot is a running Dovecot 2.3 instance. Its fields are read-only.
type Dovecot struct {
	// IMAPAddr is IMAP with STARTTLS (plaintext auth allowed too).
	IMAPAddr string
	// IMAPSAddr is IMAP over implicit TLS.
	IMAPSAddr string
	// SubmissionAddr is submission with STARTTLS; "" unless
	// DovecotOptions.Submission.
	SubmissionAddr string
	// SubmissionsAddr is submission over implicit TLS; "" unless
	// DovecotOptions.Submission.
	SubmissionsAddr string
	// MasterUser and MasterPassword log in as any user: "alice*legate"
	// with LOGIN, or SASL PLAIN with authzid "alice", authcid "legate".
	MasterUser     string
	MasterPassword string
	// Users maps user name to password (a copy; changing it changes
	// nothing).
	Users map[string]string
	// Certs and CAFile are the TLS material the server uses; clients
	// verify against CAFile with server name "localhost".
	Certs  *Certs
	CAFile string
	// LogPath is Dovecot's log file; Log reads it.
	LogPath string
	// Dir is the instance directory (config, state, mail, log).
	Dir string

	t        testing.TB
	confPath string
	outPath  string // dovecot's own stdout/stderr (early startup errors)
	mailUID  int
	mailGID  int
	seq      atomic.Uint64

	mu   sync.Mutex
	proc *process // nil when stopped
}

// StartDovecot writes a standalone dovecot.conf into a new TempDir, starts
// `dovecot -F` and waits until its ports accept connections. It fails the
// test (with the tail of Dovecot's log) if Dovecot does not come up, and
// stops it when the test ends. As root, mail processes run as nobody,
// auth as dovecot and login as dovenull; otherwise everything runs as the
// current user.
func StartDovecot(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	Require(t, "dovecot")
	if opts.Submission && opts.RelayAddr == "" {
		t.Fatalf("testenv: dovecot: Submission needs RelayAddr")
	}
	d := &Dovecot{
		MasterUser:     opts.MasterUser,
		MasterPassword: opts.MasterPassword,
		Certs:          opts.Certs,
		Dir:            TempDir(t),
		t:              t,
	}
	if d.MasterUser == "" {
		d.MasterUser = "legate"
	}
	if d.MasterPassword == "" {
		d.MasterPassword = masterSecret(t)
	}
	users := opts.Users
	if users == nil {
		users = DefaultUsers()
	}
	d.Users = make(map[string]string, len(users))
	for u, p := range users {
		d.Users[u] = p
	}
	if d.Certs == nil {
		d.Certs = NewCerts(t)
	}
	d.CAFile = d.Certs.CAFile
	d.LogPath = filepath.Join(d.Dir, "dovecot.log")
	d.outPath = filepath.Join(d.Dir, "dovecot.out")
	d.confPath = filepath.Join(d.Dir, "dovecot.conf")
	if err := d.writeFiles(opts); err != nil {
		t.Fatalf("testenv: dovecot: %v", err)
	}

	// A port from FreePort can be taken by someone else before Dovecot
	// binds it; pick new ports and try again in that case.
	for attempt := 1; ; attempt++ {
		d.IMAPAddr, d.IMAPSAddr = FreeAddr(t), FreeAddr(t)
		if opts.Submission {
			d.SubmissionAddr, d.SubmissionsAddr = FreeAddr(t), FreeAddr(t)
		}
		if err := os.WriteFile(d.confPath, []byte(d.config(opts)), 0o644); err != nil {
			t.Fatalf("testenv: dovecot: %v", err)
		}
		err := d.start()
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(tail(20, d.outPath, d.LogPath), "in use") {
			t.Logf("testenv: dovecot: port taken, retrying: %v", err)
			continue
		}
		t.Fatalf("testenv: dovecot: %v\n%s", err, tail(30, d.outPath, d.LogPath))
	}
	t.Cleanup(d.Stop)
	return d
}

// Start starts a stopped Dovecot again on the same ports and waits until
// they accept connections. Call it from the test goroutine only.
func (d *Dovecot) Start() {
	d.t.Helper()
	if err := d.start(); err != nil {
		d.t.Fatalf("testenv: dovecot: %v\n%s", err, tail(30, d.outPath, d.LogPath))
	}
}

func (d *Dovecot) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		return fmt.Errorf("start: already running")
	}
	bin, err := LookPath("dovecot")
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-F", "-c", d.confPath)
	cmd.Dir = d.Dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	p, err := startProcess("dovecot", cmd, d.outPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = p.waitReady(ctx, d.addrs()...)
	// The ports accept as soon as the master has bound them; a greeting
	// on every port proves the login processes (and config, auth, log)
	// are up. A login process still starting when SIGTERM arrives
	// ignores it and makes Dovecot take 5 s or more to exit, so the
	// implicit-TLS probes finish the handshake too.
	if err == nil {
		err = d.waitGreetings(ctx)
	}
	if err != nil {
		if serr := p.stop(5 * time.Second); serr != nil {
			d.t.Logf("testenv: dovecot: %v", serr)
		}
		return err
	}
	d.proc = p
	return nil
}

// Stop stops Dovecot (SIGTERM, then SIGKILL to its process group after
// 5 s) and waits until none of its processes is left. Stopping a stopped
// Dovecot does nothing.
func (d *Dovecot) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return
	}
	if err := d.proc.stop(5 * time.Second); err != nil {
		d.t.Errorf("testenv: dovecot: %v", err)
	}
	d.proc = nil
}

func (d *Dovecot) waitGreetings(ctx context.Context) error {
	probes := []struct {
		addr, prefix string
		tls          bool
	}{
		{d.IMAPAddr, "* OK", false},
		{d.IMAPSAddr, "* OK", true},
		{d.SubmissionAddr, "220 ", false},
		{d.SubmissionsAddr, "220 ", true},
	}
	for _, pr := range probes {
		if pr.addr == "" {
			continue
		}
		if err := waitGreeting(ctx, pr.addr, pr.prefix, pr.tls, d.Certs.ClientTLS); err != nil {
			return err
		}
	}
	return nil
}

func (d *Dovecot) addrs() []string {
	a := []string{d.IMAPAddr, d.IMAPSAddr}
	if d.SubmissionAddr != "" {
		a = append(a, d.SubmissionAddr, d.SubmissionsAddr)
	}
	return a
}

// Log returns Dovecot's log so far.
func (d *Dovecot) Log() string {
	b, err := os.ReadFile(d.LogPath)
	if err != nil && !os.IsNotExist(err) {
		d.t.Errorf("testenv: dovecot: %v", err)
	}
	return string(b)
}

// LoginCount counts successful logins of user (IMAP and submission,
// direct or through the master user) in the log: lines containing
// "Login: user=<user>". Dovecot writes its log asynchronously through its
// log process, so a login may show up a moment after the client saw OK;
// use WaitLoginCount to wait for an expected count.
func (d *Dovecot) LoginCount(user string) int {
	return strings.Count(d.Log(), "Login: user=<"+user+">")
}

// WaitLoginCount waits until LoginCount(user) is at least n and returns
// the last count seen; it returns ctx's error if that does not happen.
func (d *Dovecot) WaitLoginCount(ctx context.Context, user string, n int) (int, error) {
	for {
		got := d.LoginCount(user)
		if got >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("testenv: dovecot: %d logins of %s, want %d: %w", got, user, n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9._@+-]+$`)

// writeFiles writes the passwd files and creates the mail directory.
func (d *Dovecot) writeFiles(opts DovecotOptions) error {
	if !safeName.MatchString(d.MasterUser) {
		return fmt.Errorf("master user %q: unsupported characters", d.MasterUser)
	}
	if strings.ContainsAny(d.MasterPassword, ":\r\n") {
		return fmt.Errorf("master password: must not contain ':' or line breaks")
	}
	var users strings.Builder
	for u, p := range d.Users {
		if !safeName.MatchString(u) {
			return fmt.Errorf("user %q: unsupported characters", u)
		}
		if strings.ContainsAny(p, ":\r\n") {
			return fmt.Errorf("user %q: password must not contain ':' or line breaks", u)
		}
		fmt.Fprintf(&users, "%s:{PLAIN}%s::::::\n", u, p)
	}
	masters := fmt.Sprintf("%s:{PLAIN}%s::::::\n", d.MasterUser, d.MasterPassword)
	// The auth process reads these as root before dropping privileges
	// only for the first lookup; auth-worker runs as dovecot, so make them
	// readable for it when root.
	for name, content := range map[string]string{"users": users.String(), "masters": masters} {
		path := filepath.Join(d.Dir, name)
		if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			_, gid, err := lookupUser("dovecot")
			if err != nil {
				return err
			}
			if err := os.Chown(path, 0, gid); err != nil {
				return err
			}
		}
	}

	if os.Geteuid() == 0 {
		uid, gid, err := lookupUser("nobody")
		if err != nil {
			return err
		}
		d.mailUID, d.mailGID = uid, gid
	} else {
		d.mailUID, d.mailGID = os.Getuid(), os.Getgid()
	}
	if opts.OAuth2Introspection != "" {
		conf := "introspection_mode = post\nintrospection_url = " + opts.OAuth2Introspection +
			"\nforce_introspection = yes\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n"
		if err := os.WriteFile(filepath.Join(d.Dir, "oauth2.conf.ext"), []byte(conf), 0o644); err != nil {
			return err
		}
	}
	home := filepath.Join(d.Dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		return err
	}
	return d.chownMail(home)
}

// masterSecret returns 24 random bytes, base64url: no ":" or "*".
func masterSecret(t testing.TB) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "0"
	}
	return p
}

func currentUser() string {
	u, err := user.Current()
	if err != nil {
		return strconv.Itoa(os.Getuid())
	}
	return u.Username
}

func currentGroup() string {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		return strconv.Itoa(os.Getgid())
	}
	return g.Name
}
