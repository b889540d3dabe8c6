package config

import (
	"io"
	"log/slog"
	"slices"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/policy"
)

// PolicyConfig returns the policy section in the form package policy decides
// with. Administrators come from policy.admins, admin groups from
// directory.ldap.admin_groups. The result shares no memory with c.
func (c *Config) PolicyConfig() policy.Config {
	p := c.Policy
	var up map[string][]string
	if len(p.UserProtocols) > 0 {
		up = make(map[string][]string, len(p.UserProtocols))
		for k, v := range p.UserProtocols {
			up[k] = slices.Clone(v)
		}
	}
	return policy.Config{
		RequireTLS:             p.RequireTLS,
		AllowPlaintextLoopback: p.AllowPlaintextLoopback,
		TrustedNetworks:        slices.Clone(p.TrustedNetworks),
		BlockLegacyAuth:        p.BlockLegacyAuth,
		BlockedUsers:           slices.Clone(p.BlockedUsers),
		BlockedGroups:          slices.Clone(p.BlockedGroups),
		Admins:                 slices.Clone(p.Admins),
		AdminGroups:            slices.Clone(c.Directory.LDAP.AdminGroups),
		Protocols:              slices.Clone(p.Protocols),
		UserProtocols:          up,
		RevokeOnPasswordChange: p.RevokeOnPasswordChange,
		ExpireUnusedAfter:      p.ExpireUnusedAfter.Std(),
	}
}

// StaticUsers returns directory.static.users for directory.NewStatic.
func (c *Config) StaticUsers() []directory.StaticUser {
	out := make([]directory.StaticUser, 0, len(c.Directory.Static.Users))
	for _, u := range c.Directory.Static.Users {
		out = append(out, directory.StaticUser{
			Name:         u.Name,
			Addresses:    slices.Clone(u.Addresses),
			Groups:       slices.Clone(u.Groups),
			Admin:        u.Admin,
			Disabled:     u.Disabled,
			PasswordHash: u.PasswordHash,
		})
	}
	return out
}

// SlogLevel returns log.level as a slog.Level (info when unknown).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Handler returns a slog.Handler writing to w in log.format at log.level.
func (l Log) Handler(w io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
