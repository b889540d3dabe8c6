package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"

	"golang.org/x/oauth2/jwt"
)

// JWTBearer fetches one token per user with the JWT bearer grant (RFC 7523
// §2.1): an assertion signed by a service account names the user as its
// subject. This is Google Workspace's domain-wide delegation.
type JWTBearer struct {
	// Account is the service account: its key signs the assertions.
	Account ServiceAccount
	// TokenURL overrides Account.TokenURI when set.
	TokenURL string
	// Audience is the assertion's aud; empty means the token URL.
	Audience string
	Scopes   []string
	// HTTP is the client for the token endpoint; nil means a client with a
	// 10s timeout.
	HTTP *http.Client
}

// ServiceAccount is the part of a Google service-account key file that the
// grant needs.
type ServiceAccount struct {
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

// ReadServiceAccount reads a service-account key JSON file. Errors name the
// file, never the key.
func ReadServiceAccount(path string) (ServiceAccount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ServiceAccount{}, err
	}
	var sa ServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return ServiceAccount{}, fmt.Errorf("%s: not a service-account key file (JSON)", path)
	}
	switch {
	case sa.ClientEmail == "":
		return ServiceAccount{}, fmt.Errorf("%s: no client_email", path)
	case sa.PrivateKey == "":
		return ServiceAccount{}, fmt.Errorf("%s: no private_key", path)
	}
	if _, err := parseRSAKey([]byte(sa.PrivateKey)); err != nil {
		return ServiceAccount{}, fmt.Errorf("%s: private_key: %w", path, err)
	}
	return sa, nil
}

// PerSubject implements Fetcher: each user gets a token of its own.
func (j *JWTBearer) PerSubject() bool { return true }

// Fetch implements Fetcher.
func (j *JWTBearer) Fetch(ctx context.Context, subject string) (Token, error) {
	if subject == "" {
		return Token{}, fmt.Errorf("%w: jwt_bearer needs a subject", ErrUnavailable)
	}
	url := j.TokenURL
	if url == "" {
		url = j.Account.TokenURI
	}
	if url == "" {
		return Token{}, fmt.Errorf("%w: %w", ErrUnavailable, errors.New("no token URL"))
	}
	cfg := jwt.Config{
		Email:        j.Account.ClientEmail,
		PrivateKey:   []byte(j.Account.PrivateKey),
		PrivateKeyID: j.Account.PrivateKeyID,
		Subject:      subject,
		Scopes:       j.Scopes,
		TokenURL:     url,
		Audience:     j.Audience,
	}
	t, err := cfg.TokenSource(withHTTP(ctx, j.HTTP)).Token()
	return convert(t, err)
}
