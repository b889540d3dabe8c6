// Package oauth gets the OAuth 2.0 access tokens Legate logs in upstream with
// when an upstream takes tokens instead of a master password (Microsoft 365,
// Google Workspace): client credentials (RFC 6749 §4.4) with a client secret
// or a private-key JWT client assertion (RFC 7523 §2.2, with the x5t and
// x5t#S256 certificate thumbprints Microsoft's certificate credentials need),
// and the JWT bearer grant naming the user as subject (RFC 7523 §2.1,
// Google's domain-wide delegation). Tokens are cached per subject until
// shortly before they expire, fetched by one request at a time per subject,
// kept in memory only and never logged.
package oauth

import (
	"context"
	"errors"
	"time"
)

// Grants.
const (
	GrantClientCredentials = "client_credentials"
	GrantJWTBearer         = "jwt_bearer"
)

// ErrUnavailable wraps every failure to get a token: the token endpoint is
// down, refuses the client, or answers garbage.
var ErrUnavailable = errors.New("oauth: token unavailable")

// Token is an access token and the time it stops working.
type Token struct {
	Access string
	Expiry time.Time
}

// Fetcher asks a token endpoint for a token. subject is the user for grants
// that name one (jwt_bearer) and ignored by app-only grants.
type Fetcher interface {
	Fetch(ctx context.Context, subject string) (Token, error)
	// PerSubject reports whether tokens differ per subject; an app-only
	// fetcher's token is shared by every user.
	PerSubject() bool
}
