package daemon

import (
	"io"
	"log/slog"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/directory"
)

// buildLDAPDirectory reads users from upstream.ldap (directory.type: ldap),
// cached for directory.cache_ttl.
func buildLDAPDirectory(cfg *config.Config) (directory.Directory, error) {
	up, err := LDAPUpstream(cfg.Upstream.LDAP, cfg.Limits.DialTimeout.Std(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	l := cfg.Directory.LDAP
	d, err := directory.NewLDAP(directory.LDAPOptions{
		Upstream: up, BaseDN: l.BaseDN, UserFilter: l.UserFilter, NameAttribute: l.NameAttribute,
		MailAttributes: l.MailAttributes, GroupAttribute: l.GroupAttribute, AdminGroups: l.AdminGroups,
		DisabledFilter: l.DisabledFilter, PasswordChangedAttribute: l.PasswordChangedAttribute,
	})
	if err != nil {
		return nil, err
	}
	return directory.NewCached(d, cfg.Directory.CacheTTL.Std(), nil), nil
}
