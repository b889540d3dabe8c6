package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/legate-proxy/legate/internal/oauth"
)

// TokenSource gives OAuth 2.0 access tokens for upstream logins; an
// *oauth.Cache is one.
type TokenSource interface {
	Token(ctx context.Context, subject string) (string, error)
	// Forget drops subject's cached token after the upstream refused it.
	Forget(subject string)
	// Name names the source in logs and readiness ("upstream.imap").
	Name() string
}

// OAuth makes the upstream login use a token (SASL XOAUTH2 or
// OAUTHBEARER) instead of the master credential.
type OAuth struct {
	// Mechanism is oauth.MechXOAUTH2 or oauth.MechOAUTHBEARER.
	Mechanism string
	Tokens    TokenSource
	// ByName logs in as the user's login name; otherwise as its first
	// address (the mailbox), which is what Microsoft 365 and Google want.
	ByName bool
}

// Mechanisms of the master credential.
const MechPlain = "PLAIN"

// LoginName returns the name to log in upstream as for a user: the login
// name for master logins, the mailbox for token logins.
func (c *Config) LoginName(name string, addresses []string) string {
	if c.OAuth == nil || c.OAuth.ByName || len(addresses) == 0 {
		return name
	}
	return addresses[0]
}

// SASL returns the mechanism and the initial response (not base64
// encoded) that log in upstream as user. Failing to get a token wraps
// ErrUnavailable.
func (c *Config) SASL(ctx context.Context, user string) (mech string, ir []byte, err error) {
	if c.OAuth == nil {
		return MechPlain, []byte(user + "\x00" + c.MasterUser + "\x00" + c.MasterPassword), nil
	}
	if !oauth.ValidUser(user) {
		return "", nil, fmt.Errorf("%w: %q cannot be named in %s", ErrUnavailable, user, c.OAuth.Mechanism)
	}
	tok, err := c.OAuth.Tokens.Token(ctx, user)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s token: %w", ErrUnavailable, c.OAuth.Tokens.Name(), err)
	}
	host, ps, _ := net.SplitHostPort(c.Address)
	port, _ := strconv.Atoi(ps)
	return c.OAuth.Mechanism, oauth.InitialResponse(c.OAuth.Mechanism, user, tok, host, port), nil
}

// ErrTokenRefused marks an upstream that refused a token Legate sent.
var ErrTokenRefused = errors.New("upstream refused the token")

// TokenRefused records that the upstream refused user's token: the cached
// token is dropped, and the error says what the operator should check.
func (c *Config) TokenRefused(user, reply string) error {
	if c.OAuth == nil {
		return nil
	}
	c.OAuth.Tokens.Forget(user)
	return fmt.Errorf("%w: %w for %s (%s): %s", ErrUnavailable, ErrTokenRefused, user, clip(reply, 200), TokenHint(reply))
}

// TokenHint names the likely cause of a refused token from the upstream's
// reply, for the operator's log.
func TokenHint(reply string) string {
	r := strings.ToLower(reply)
	switch {
	case strings.Contains(r, "5.7.139") || strings.Contains(r, "smtpclientauthentication"):
		return "SMTP AUTH is disabled for the mailbox or tenant (Exchange 5.7.139): Set-CASMailbox -SmtpClientAuthenticationDisabled $false"
	case strings.Contains(r, "5.7.3") || strings.Contains(r, "5.7.57"):
		return "the app may not send as this mailbox: grant SMTP.SendAsApp and the mailbox permission"
	case strings.Contains(r, "invalid_token") || strings.Contains(r, "expired"):
		return "the token was not accepted (expired or wrong audience/scope): check the scope and the clocks"
	}
	return "the token was refused: check the app's permission on this mailbox (Exchange: Add-MailboxPermission / IMAP.AccessAsApp; Google: domain-wide delegation with scope https://mail.google.com/)"
}

func clip(s string, n int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
