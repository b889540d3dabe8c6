// Package upstream dials the real servers Legate passes sessions on to: plain
// TCP, implicit TLS, or plain TCP that the protocol upgrades with STARTTLS.
// Certificates are verified against a CA file by default.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// TLS modes of an upstream connection.
const (
	ModeNone     = "none"
	ModeSTARTTLS = "starttls"
	ModeImplicit = "implicit"
)

// Login forms for the master credential.
const (
	LoginAuthzid   = "authzid"   // SASL PLAIN, authzid=user, authcid=master
	LoginSeparator = "separator" // LOGIN user<sep>master
)

// ErrUnavailable wraps every failure to reach or log in to an upstream.
var ErrUnavailable = errors.New("upstream unavailable")

// Config says how to reach one upstream server and log in there on a user's
// behalf.
type Config struct {
	Address string
	// Mode is none, starttls or implicit; empty means none.
	Mode string
	// TLS verifies the upstream certificate; nil means the system roots and
	// the host of Address as server name.
	TLS            *tls.Config
	MasterUser     string
	MasterPassword string
	// Login is authzid or separator; empty means authzid.
	Login string
	// Separator joins user and master in the LOGIN form; empty means "*".
	Separator string
	// DialTimeout bounds connect plus TLS handshake; zero means 10s.
	DialTimeout time.Duration
	// IOTimeout bounds each read or write of the login exchange; zero means 30s.
	IOTimeout time.Duration
	// OAuth, if set, logs in with a token instead of the master credential.
	OAuth *OAuth
}

// DialTimeoutOrDefault returns DialTimeout or its default.
func (c *Config) DialTimeoutOrDefault() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return 10 * time.Second
}

// IOTimeoutOrDefault returns IOTimeout or its default.
func (c *Config) IOTimeoutOrDefault() time.Duration {
	if c.IOTimeout > 0 {
		return c.IOTimeout
	}
	return 30 * time.Second
}

// SeparatorOrDefault returns Separator or "*".
func (c *Config) SeparatorOrDefault() string {
	if c.Separator != "" {
		return c.Separator
	}
	return "*"
}

// TLSClientConfig returns the TLS config to use towards the upstream, with
// ServerName filled in from Address when unset.
func (c *Config) TLSClientConfig() *tls.Config {
	var tc *tls.Config
	if c.TLS != nil {
		tc = c.TLS.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(c.Address); err == nil {
			tc.ServerName = host
		}
	}
	return tc
}

// UpstreamAddress is the upstream's host:port; with it *Config is the
// login.Upstream an allowed login.Result names.
func (c *Config) UpstreamAddress() string { return c.Address }

// Dial connects to the upstream; with implicit TLS the handshake is done
// before it returns. Errors wrap ErrUnavailable.
func (c *Config) Dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.DialTimeoutOrDefault())
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrUnavailable, c.Address, err)
	}
	if c.Mode == ModeImplicit {
		return c.Handshake(ctx, conn)
	}
	return conn, nil
}

// Handshake runs a client TLS handshake on conn (after STARTTLS, or for
// implicit TLS) and closes conn on failure.
func (c *Config) Handshake(ctx context.Context, conn net.Conn) (net.Conn, error) {
	tc := tls.Client(conn, c.TLSClientConfig())
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.DialTimeoutOrDefault())
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: tls handshake with %s: %w", ErrUnavailable, c.Address, err)
	}
	return tc, nil
}

// ClientTLS builds a verifying client TLS config from a CA file (empty: system
// roots) and a server name (empty: taken from the address at dial time).
// insecureSkipVerify turns verification off; callers must log a loud warning.
func ClientTLS(caFile, serverName string, insecureSkipVerify bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecureSkipVerify}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("upstream: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream: ca_file %s: no PEM certificates", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
