package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/testenv"
)

// benchLDAP measures issue 6: simple binds per second and equality
// searches per second (one entry back) over persistent connections,
// direct to slapd and through Legate (proxied authorization).
func benchLDAP(ctx context.Context, t testing.TB, o options) *section {
	certs := testenv.NewCerts(t)
	sl := testenv.StartSlapd(t, testenv.SlapdOptions{})
	dir := testenv.TempDir(t)

	cfg := benchConfig(dir, certs.CertFile, certs.KeyFile)
	cfg.Listen.LDAP = "127.0.0.1:0"
	cfg.Upstream.LDAP.Address = sl.Addr
	cfg.Upstream.LDAP.TLS = config.TLSNone
	cfg.Upstream.LDAP.BindDN = sl.ServiceDN
	cfg.Upstream.LDAP.BindPasswordFile = writeSecret(t, dir, "service.secret", sl.ServicePassword)
	cfg.Directory.Type = "ldap"
	cfg.Directory.LDAP.BaseDN = "ou=people," + sl.BaseDN
	cfg.Directory.LDAP.UserFilter = "(uid=%s)"
	cfg.Directory.LDAP.AdminGroups = []string{sl.GroupDN("admins")}
	app := appPassword(ctx, t, cfg, "alice")
	lg := startLegate(t, dir, cfg)

	type endpoint struct{ name, addr, password string }
	targets := []endpoint{
		{"direct slapd", sl.Addr, sl.Users["alice"]},
		{"Legate", lg.Addrs["ldap"], app},
	}
	dn := sl.UserDN("alice")
	sec := newSection("LDAP (issue 6)")
	tab := sec.add("measurement", "direct slapd", "Legate", "Legate / direct", "target", "result")

	var bindOpens, searchOpens []opener
	for _, tg := range targets {
		bindOpens = append(bindOpens, named(tg.name, func(int) (session, error) {
			c, err := dialLDAP(tg.addr)
			if err != nil {
				return session{}, err
			}
			return session{op: func() error { return c.Bind(dn, tg.password) }, close: func() { c.Close() }}, nil
		}))
		searchOpens = append(searchOpens, named(tg.name, func(int) (session, error) {
			c, err := dialLDAP(tg.addr)
			if err != nil {
				return session{}, err
			}
			if err := c.Bind(dn, tg.password); err != nil {
				c.Close()
				return session{}, err
			}
			req := ldap.NewSearchRequest("ou=people,"+sl.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
				0, 0, false, "(uid=bob)", []string{"cn", "mail"}, nil)
			op := func() error {
				res, err := c.Search(req)
				if err == nil && len(res.Entries) != 1 {
					err = fmt.Errorf("ldap: search returned %d entries, want 1", len(res.Entries))
				}
				return err
			}
			return session{op: op, close: func() { c.Close() }}, nil
		}))
	}
	binds, err := compare(ctx, o.Sessions, o.Duration, bindOpens...)
	if err != nil {
		t.Fatalf("ldap binds: %v", err)
	}
	searches, err := compare(ctx, o.Sessions, o.Duration, searchOpens...)
	if err != nil {
		t.Fatalf("ldap searches: %v", err)
	}
	for i, tg := range targets {
		sec.record("binds "+tg.name, binds[i])
		sec.record("searches "+tg.name, searches[i])
	}
	ratio, target, res := atLeast(binds[1], binds[0], 0.75)
	tab.row(fmt.Sprintf("simple binds, %d connections (binds/s)", o.Sessions),
		rate(binds[0]), rate(binds[1]), ratio, target, res)
	ratio, target, res = atLeast(searches[1], searches[0], 0.6)
	tab.row(fmt.Sprintf("equality search (uid=bob), one entry, %d bound connections (searches/s)", o.Sessions),
		rate(searches[0]), rate(searches[1]), ratio, target, res)
	sec.Notes = append(sec.Notes,
		"Direct connections bind as alice's DN with her directory password; Legate connections bind as the same DN with an app password. Plain LDAP (no StartTLS) on both paths and on Legate's upstream pool (pool_size 8).",
		"Measured in three rounds that take turns (direct, Legate), so that background load spreads over both. Legate runs as a child process of the bench.",
		"Legate: directory.type ldap against the same slapd (cached, cache_ttl 60s), proxied authorization (RFC 4370) for every forwarded search.",
	)
	return sec
}

func dialLDAP(addr string) (*ldap.Conn, error) {
	c, err := ldap.DialURL("ldap://"+addr, ldap.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(30 * time.Second)
	return c, nil
}
