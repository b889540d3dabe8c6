// Package opstore holds what Legate's two in-memory zitadel/oidc providers
// share in their op.Storage: the demo sign-in provider of `legate demo`
// (internal/portal/demoidp) and the test token server of the OAuth 2.0
// upstream tests (internal/testenv/oauthserver). Both sign with one RSA key
// made at start (RS256) and issue no refresh tokens.
package opstore

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Keys is a provider's signing key; it implements the key methods of
// op.Storage. Embed it.
type Keys struct{ key *signingKey }

// NewKeys makes a 2048-bit RSA signing key.
func NewKeys() (Keys, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Keys{}, fmt.Errorf("opstore: key: %w", err)
	}
	return Keys{key: &signingKey{id: rand.Text()[:8], key: k}}, nil
}

// SigningKey implements op.Storage.
func (k Keys) SigningKey(context.Context) (op.SigningKey, error) { return k.key, nil }

// SignatureAlgorithms implements op.Storage.
func (k Keys) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.Storage.
func (k Keys) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{k.key}}, nil }

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ *signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

// NoRefresh implements the refresh-token and session-ending methods of
// op.Storage for a provider that issues no refresh tokens and keeps no
// sessions to end. Embed it.
type NoRefresh struct{}

// CreateAccessAndRefreshTokens implements op.Storage: refused.
func (NoRefresh) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not supported")
}

// TokenRequestByRefreshToken implements op.Storage: no refresh tokens.
func (NoRefresh) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

// GetRefreshTokenInfo implements op.Storage: no refresh tokens.
func (NoRefresh) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// TerminateSession implements op.Storage: nothing to end.
func (NoRefresh) TerminateSession(context.Context, string, string) error { return nil }

// RevokeToken implements op.Storage: tokens simply expire.
func (NoRefresh) RevokeToken(context.Context, string, string, string) *oidc.Error { return nil }
