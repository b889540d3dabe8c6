// Package demo runs `legate demo`: the real proxy in front of embedded
// in-memory upstreams (go-imap's imapmemserver, a go-smtp server that
// delivers into the same mailboxes, and a gldap directory), with a static
// directory holding the user `demo`, so a newcomer logs in within a minute.
// Everything listens on loopback; plaintext is allowed only there. Nothing
// here is reachable from `legate serve`.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/daemon"
)

// Options configure the demo.
type Options struct {
	// IMAP, SMTP, LDAP are the listen addresses; empty means
	// 127.0.0.1:1143, 127.0.0.1:1587 and 127.0.0.1:1389. "-" disables one.
	IMAP, SMTP, LDAP string
	// Portal is the self-service page's address; empty means
	// 127.0.0.1:1080, "-" disables it. It signs in at a demo-only OpenID
	// provider on a free loopback port.
	Portal string
	// Dir holds the demo's database; empty means a new temp dir, removed at exit.
	Dir string
	// Stdout receives the welcome text; Logger the logs (nil: discarded).
	Stdout io.Writer
	Logger *slog.Logger
	// Started, if set, is called once everything listens (tests).
	Started func(*Daemon)
}

// Daemon is the running demo.
type Daemon struct {
	*daemon.Daemon
	User     string
	Password string
	Address  string
}

const (
	demoUser    = "demo"
	demoAddress = "demo@legate.test"
)

// Run runs the demo until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "legate-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	masterPW := randomHex(16)
	up := newMailUpstream("legate", masterPW)
	up.addUser(demoUser, []string{demoAddress})
	if err := up.deliver(demoUser, welcome()); err != nil {
		return err
	}
	if err := up.start(); err != nil {
		return fmt.Errorf("demo: start upstreams: %w", err)
	}
	defer up.close()
	dirUp := newLDAPUpstream(masterPW, o.Logger)
	if err := dirUp.start(); err != nil {
		return fmt.Errorf("demo: start upstreams: %w", err)
	}
	defer dirUp.close()
	pwFile := filepath.Join(dir, "master.secret")
	if err := os.WriteFile(pwFile, []byte(masterPW+"\n"), 0o600); err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Listen.IMAP = orDefault(o.IMAP, "127.0.0.1:1143")
	cfg.Listen.Submission = orDefault(o.SMTP, "127.0.0.1:1587")
	cfg.Storage.Path = filepath.Join(dir, "legate.db")
	cfg.Storage.KeyFile = filepath.Join(dir, "hmac.key")
	cfg.Policy.AllowPlaintextLoopback = true
	mail := func(addr string) config.UpstreamMail {
		return config.UpstreamMail{Address: addr, TLS: config.TLSNone, MasterUser: "legate",
			MasterPasswordFile: pwFile, Login: config.LoginAuthzid, Separator: "*"}
	}
	cfg.Upstream.IMAP = mail(up.imapLn.Addr().String())
	cfg.Upstream.SMTP = mail(up.smtpLn.Addr().String())
	cfg.Listen.LDAP = orDefault(o.LDAP, "127.0.0.1:1389")
	// authz: service, because the static directory gives users no DN for
	// RFC 4370 proxied authorization (and gldap does not implement that
	// control): requests run as the service account, confined to the base.
	cfg.Upstream.LDAP = config.UpstreamLDAP{Address: dirUp.addr.String(), TLS: config.TLSNone,
		BindDN: ldapServiceDN, BindPasswordFile: pwFile, PoolSize: 2, Authz: config.AuthzService,
		SearchBases: []string{ldapBase},
		Attributes:  []string{"uid", "cn", "sn", "mail", "telephoneNumber", "objectClass"}}
	cfg.Directory.Static.Users = []config.User{{Name: demoUser, Addresses: []string{demoAddress}}}

	d, err := daemon.Start(ctx, cfg, o.Logger)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	created, err := d.Control().CreateAppPassword(ctx, control.CreateArgs{User: demoUser, Name: "demo", Via: "cli"})
	if err != nil {
		d.Close()
		return err
	}
	pw := created.Secret
	w := o.Stdout
	fmt.Fprintln(w, "Legate demo: the proxy in front of an in-memory mail server and directory. Ctrl-C stops it.")
	fmt.Fprintf(w, "user: %s\n", demoUser)
	fmt.Fprintf(w, "app password: %s\n", pw)
	if a := d.Addr("imap"); a != nil {
		fmt.Fprintln(w, "List the INBOX over IMAP (it holds a welcome message):")
		fmt.Fprintf(w, "curl -s --user '%s:%s' 'imap://%s/INBOX' --request 'FETCH 1:* (FLAGS ENVELOPE)'\n", demoUser, pw, a)
	}
	if a := d.Addr("submission"); a != nil {
		fmt.Fprintln(w, "Send yourself a message over SMTP submission, then list the INBOX again:")
		fmt.Fprintf(w, "swaks --server %s --auth PLAIN --auth-user %s --auth-password '%s' --from %s --to %s\n",
			a, demoUser, pw, demoAddress, demoAddress)
	}
	if a := d.Addr("ldap"); a != nil {
		fmt.Fprintln(w, "Look yourself up in the directory over LDAP:")
		fmt.Fprintf(w, "ldapsearch -x -H ldap://%s -D %s -w '%s' -b %s '(uid=%s)'\n", a, demoUser, pw, ldapBase, demoUser)
	}
	if addr := orDefault(o.Portal, "127.0.0.1:1080"); addr != "" {
		settings := config.ClientSettings{IMAP: clientSetting(d.Addr("imap")),
			SMTP: clientSetting(d.Addr("submission")), LDAP: clientSetting(d.Addr("ldap"))}
		dp, err := startPortal(addr, d.Control(), settings, o.Logger)
		if err != nil {
			d.Close()
			return err
		}
		defer dp.close()
		fmt.Fprintln(w, "Manage your app passwords on the self-service page (demo sign-in: no real identity provider):")
		fmt.Fprintf(w, "portal: %s\n", dp.URL)
		fmt.Fprintf(w, "portal sign-in: user %s, one-time code %s\n", demoUser, dp.Code)
	}
	if o.Started != nil {
		o.Started(&Daemon{Daemon: d, User: demoUser, Password: pw, Address: demoAddress})
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.Shutdown(sctx)
}

func welcome() []byte {
	return []byte("From: Legate <legate@legate.test>\r\n" +
		"To: demo@legate.test\r\n" +
		"Subject: Welcome to Legate\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <welcome@legate.test>\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"You logged in with an app password through Legate.\r\n" +
		"Legate checked it, applied the policy, and opened this session\r\n" +
		"to the mail server on your behalf with its master credential.\r\n")
}

func orDefault(s, d string) string {
	switch s {
	case "":
		return d
	case "-":
		return ""
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
