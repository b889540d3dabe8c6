package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/testenv/oauthserver"
)

// benchOAuth2 compares IMAP logins through Legate with a master-user
// upstream and with an oauth2 upstream (per-user tokens, warm cache), both
// against the same Dovecot, which checks tokens by introspection at the
// test authorization server. Dovecot's auth cache is on, as in production,
// so both kinds of upstream login cost Dovecot a cache lookup.
func benchOAuth2(ctx context.Context, t testing.TB, o options) *section {
	srv := oauthserver.Start(t, oauthserver.Options{})
	srv.AddResourceServer("mail", "mail-secret")
	iu, _ := url.Parse(srv.IntrospectionURL)
	iu.User = url.UserPassword("mail", "mail-secret")
	certs := testenv.NewCerts(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Certs: certs, OAuth2Introspection: iu.String(),
		AuthCache: true, MaxUserIPConnections: 10*o.Sessions + 100})

	start := func(name string, oauth bool) (*childProc, string) {
		dir := testenv.TempDir(t)
		cfg := benchConfig(dir, certs.CertFile, certs.KeyFile)
		cfg.Listen.IMAP = "127.0.0.1:0"
		up := config.UpstreamMail{Address: dc.IMAPAddr, TLS: config.TLSNone, Login: config.LoginAuthzid,
			Separator: "*", Auth: config.AuthMaster}
		if oauth {
			sa := filepath.Join(dir, "sa.json")
			if err := os.WriteFile(sa, srv.AddServiceAccount(t, name+"@bench", func(string) bool { return true }), 0o600); err != nil {
				t.Fatalf("service account: %v", err)
			}
			up.Auth = config.AuthOAuth2
			up.OAuth2 = config.OAuth2{Provider: config.ProviderGeneric, Mechanism: config.MechXOAUTH2,
				Grant: config.GrantJWTBearer, TokenURL: srv.TokenURL, ServiceAccountFile: sa, Audience: srv.Issuer,
				MailboxAttribute: config.MailboxName}
		} else {
			up.MasterUser = dc.MasterUser
			up.MasterPasswordFile = writeSecret(t, dir, "master.secret", dc.MasterPassword)
		}
		cfg.Upstream.IMAP = up
		cfg.Directory.Static.Users = []config.User{{Name: "alice", Addresses: []string{"alice@example.com"}}}
		app := appPassword(ctx, t, cfg, "alice")
		return startLegate(t, dir, cfg), app
	}
	master, masterApp := start("master", false)
	tok, tokApp := start("oauth", true)

	// Warm both: the first oauth2 login fetches alice's token.
	for _, w := range []struct{ addr, pw string }{{master.Addrs["imap"], masterApp}, {tok.Addrs["imap"], tokApp}} {
		c, err := loginIMAP(ctx, w.addr, nil, "alice", w.pw)
		if err != nil {
			t.Fatalf("warm-up login: %v", err)
		}
		c.logout()
	}
	login := func(addr, pw string) opener {
		return func(int) (session, error) {
			op := func() error {
				c, err := loginIMAP(ctx, addr, nil, "alice", pw)
				if err != nil {
					return err
				}
				return c.logout()
			}
			return session{op: op, close: noClose}, nil
		}
	}
	r, err := compare(ctx, o.Sessions, o.Duration,
		named("master", login(master.Addrs["imap"], masterApp)),
		named("oauth2", login(tok.Addrs["imap"], tokApp)))
	if err != nil {
		t.Fatalf("oauth2 logins: %v", err)
	}
	sec := newSection("IMAP logins through an oauth2 upstream (issue 15)")
	sec.record("logins master", r[0])
	sec.record("logins oauth2", r[1])
	tab := sec.add("measurement", "Legate, master-user upstream", "Legate, oauth2 upstream", "oauth2 / master", "target", "result")
	ratio, target, res := atLeast(r[1], r[0], 0.9)
	tab.row(fmt.Sprintf("logins plain: connect, LOGIN, LOGOUT; %d in parallel (logins/s)", o.Sessions),
		rate(r[0]), rate(r[1]), ratio, target, res)
	sec.Notes = append(sec.Notes,
		"Both Legate children log in as alice with an app password; upstream, one uses SASL PLAIN as the master user, the other XOAUTH2 with alice's token from a JWT bearer grant (cached after the first login). Dovecot checks tokens with passdb oauth2 (RFC 7662 introspection); its auth cache is on for both.")
	return sec
}
