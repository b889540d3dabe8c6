// Package daemon assembles a running Legate from a configuration: store,
// directory, login service, front-ends, admin socket and HTTP endpoints. It
// starts them in dependency order, stops them in reverse, reloads on SIGHUP or
// a change of the config file, and drains on SIGTERM.
package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/oauth"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
	"github.com/legate-proxy/legate/store/etcd"
)

// NewLogger builds the daemon's logger from log.format and log.level.
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// OpenStore opens the configured app-password store: storage.backend bolt
// (default) or etcd. With etcd, every instance must share storage.key_file.
func OpenStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Storage.Backend {
	case "", "bolt":
		// The database directory is created on first start, like the
		// database and its key (legate check reports one that cannot be).
		if dir := filepath.Dir(cfg.Storage.Path); cfg.Storage.Path != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("store: database directory: %w", err)
			}
		}
		st, err := bolt.Open(ctx, bolt.Options{Path: cfg.Storage.Path, KeyFile: cfg.Storage.KeyFile, Logger: log,
			AuditBounds: store.AuditBounds{Retain: cfg.Audit.Retain.Std()}})
		if err != nil {
			return nil, err // not a typed nil *bolt.Store in the interface
		}
		return st, nil
	case "etcd":
		opts, err := etcdOptions(cfg, log)
		if err != nil {
			return nil, err
		}
		st, err := etcd.Open(ctx, opts)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	return nil, fmt.Errorf("storage.backend %q is not supported", cfg.Storage.Backend)
}

// etcdOptions converts storage.etcd, reading the TLS material and password
// files.
func etcdOptions(cfg *config.Config, log *slog.Logger) (etcd.Options, error) {
	e := cfg.Storage.Etcd
	opts := etcd.Options{
		Endpoints: e.Endpoints, Prefix: e.Prefix, Username: e.Username,
		DialTimeout: e.DialTimeout.Std(), StaleGrace: e.StaleGrace.Std(),
		KeyFile: cfg.Storage.KeyFile, Logger: log, AuditBounds: store.AuditBounds{Retain: cfg.Audit.Retain.Std()},
	}
	if e.PasswordFile != "" {
		pw, err := config.ReadSecretFile(e.PasswordFile)
		if err != nil {
			return opts, fmt.Errorf("storage.etcd.password_file: %w", err)
		}
		opts.Password = pw
	}
	if e.TLS.CAFile != "" || e.TLS.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.TLS.CAFile != "" {
			pem, err := os.ReadFile(e.TLS.CAFile)
			if err != nil {
				return opts, fmt.Errorf("storage.etcd.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return opts, fmt.Errorf("storage.etcd.tls.ca_file: no PEM certificate in %s", e.TLS.CAFile)
			}
		}
		if e.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(e.TLS.CertFile, e.TLS.KeyFile)
			if err != nil {
				return opts, fmt.Errorf("storage.etcd.tls: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts.TLS = tc
	}
	return opts, nil
}

// PolicyOf returns the policy configuration.
func PolicyOf(cfg *config.Config) *policy.Config {
	p := cfg.PolicyConfig()
	return &p
}

// BuildDirectory builds the configured directory, cached for directory.cache_ttl.
func BuildDirectory(cfg *config.Config) (directory.Directory, error) {
	switch cfg.Directory.Type {
	case "", "static":
		s, err := directory.NewStatic(cfg.StaticUsers())
		if err != nil {
			return nil, err
		}
		return s, nil
	case "ldap":
		return buildLDAPDirectory(cfg)
	}
	return nil, fmt.Errorf("directory.type %q is not supported", cfg.Directory.Type)
}

// MailUpstream converts upstream.imap or upstream.smtp.
func MailUpstream(u config.UpstreamMail, dial time.Duration, log *slog.Logger, key string, obs oauth.Observer) (*upstream.Config, error) {
	return mailUpstream(u, dial, log, key, obs, nil)
}

// mailUpstream is MailUpstream taking token caches from caches (nil: new
// ones).
func mailUpstream(u config.UpstreamMail, dial time.Duration, log *slog.Logger, key string, obs oauth.Observer, caches *tokenCaches) (*upstream.Config, error) {
	if !u.Configured() {
		return nil, nil
	}
	tc, err := upstream.ClientTLS(u.CAFile, u.ServerName, u.InsecureSkipVerify)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if u.InsecureSkipVerify {
		log.Warn("UPSTREAM CERTIFICATE VERIFICATION IS OFF: anyone on the path can read the master credential and every session",
			"upstream", key, "address", u.Address)
	}
	c := &upstream.Config{Address: u.Address, Mode: u.TLS, TLS: tc, MasterUser: u.MasterUser,
		Login: u.Login, Separator: u.Separator, DialTimeout: dial}
	if u.MasterPasswordFile != "" {
		pw, err := config.ReadSecretFile(u.MasterPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%s.master_password_file: %w", key, err)
		}
		c.MasterPassword = pw
	}
	if u.Auth == config.AuthOAuth2 {
		if c.OAuth, err = oauthLogin(u, key, obs, caches); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// LDAPUpstream converts upstream.ldap.
func LDAPUpstream(u config.UpstreamLDAP, dial time.Duration, log *slog.Logger) (*upstream.Config, error) {
	if !u.Configured() {
		return nil, nil
	}
	tc, err := upstream.ClientTLS(u.CAFile, u.ServerName, u.InsecureSkipVerify)
	if err != nil {
		return nil, fmt.Errorf("upstream.ldap: %w", err)
	}
	if u.InsecureSkipVerify {
		log.Warn("UPSTREAM CERTIFICATE VERIFICATION IS OFF: anyone on the path can read the service credential and every search",
			"upstream", "upstream.ldap", "address", u.Address)
	}
	c := &upstream.Config{Address: u.Address, Mode: u.TLS, TLS: tc, MasterUser: u.BindDN, DialTimeout: dial}
	if u.BindPasswordFile != "" {
		pw, err := config.ReadSecretFile(u.BindPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.ldap.bind_password_file: %w", err)
		}
		c.MasterPassword = pw
	}
	return c, nil
}
