package oauthserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/legate-proxy/legate/internal/opstore"
)

var errNotFound = errors.New("oauthserver: not found")

// client is a registered OAuth client: an app using client credentials, a
// service account using the JWT bearer grant, or a resource server that
// introspects tokens.
type client struct {
	id     string
	secret string
	grants []oidc.GrantType
	// cert clients authenticate with a private-key JWT assertion.
	certPub  *rsa.PublicKey
	certX5T  string // base64url SHA-1 of the certificate
	certX5TS string // base64url SHA-256 of the certificate
	// service accounts sign JWT bearer assertions with this key.
	saKeyID string
	saPub   *rsa.PublicKey
	mayAct  func(subject string) bool
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return nil }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType  { return nil }
func (c *client) GrantTypes() []oidc.GrantType        { return c.grants }
func (c *client) LoginURL(string) string              { return "" }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return 5 * time.Minute }
func (c *client) DevMode() bool                       { return true }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return true }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }

// tokenRequest is a client-credentials token request.
type tokenRequest struct {
	subject string
	scopes  []string
}

func (r *tokenRequest) GetSubject() string    { return r.subject }
func (r *tokenRequest) GetAudience() []string { return []string{r.subject} }
func (r *tokenRequest) GetScopes() []string   { return r.scopes }

// token is an issued access token.
type token struct {
	subject string
	client  string // the client that asked for it
	scopes  []string
	expiry  time.Time
}

// storage is the server's in-memory op.Storage.
type storage struct {
	opstore.Keys
	opstore.NoRefresh
	lifetime func() time.Duration

	mu      sync.Mutex
	clients map[string]*client
	tokens  map[string]*token
	// issued counts tokens per client and subject.
	issued map[[2]string]int
}

var (
	_ op.Storage                  = (*storage)(nil)
	_ op.ClientCredentialsStorage = (*storage)(nil)
)

func (s *storage) getClient(id string) (*client, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	return c, ok
}

func (s *storage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, oidc.ErrUnsupportedGrantType().WithDescription("only token grants are served")
}
func (s *storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotFound
}
func (s *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotFound
}
func (s *storage) SaveAuthCode(context.Context, string, string) error { return errNotFound }
func (s *storage) DeleteAuthRequest(context.Context, string) error    { return nil }

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	t := &token{subject: r.GetSubject(), scopes: slices.Clone(r.GetScopes()), expiry: time.Now().Add(s.lifetime())}
	switch req := r.(type) {
	case *tokenRequest:
		t.client = req.subject
	case *oidc.JWTTokenRequest:
		t.client = req.Issuer
	default:
		return "", time.Time{}, errors.New("oauthserver: unsupported token request")
	}
	id := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, old := range s.tokens { // bound memory
		if now.After(old.expiry.Add(time.Minute)) {
			delete(s.tokens, k)
		}
	}
	s.tokens[id] = t
	s.issued[[2]string{t.client, t.subject}]++
	return id, t.expiry, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.getClient(id)
	if !ok {
		return nil, errNotFound
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.getClient(id)
	if !ok || c.secret == "" || c.secret != secret {
		return errors.New("oauthserver: invalid client credentials")
	}
	return nil
}

// ClientCredentials implements op.ClientCredentialsStorage.
func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	c, _ := s.getClient(id)
	return c, nil
}

// ClientCredentialsTokenRequest implements op.ClientCredentialsStorage: an
// app-only token's subject is the app.
func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	return &tokenRequest{subject: id, scopes: scopes}, nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}
func (s *storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errors.New("oauthserver: userinfo is not supported")
}

// SetIntrospectionFromToken answers RFC 7662 introspection: the token's
// subject as sub and username, the client it was issued to, scope and
// expiry. Expired or unknown tokens are inactive.
func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, _, _ string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expiry) {
		return errNotFound
	}
	resp.Subject = t.subject
	resp.Username = t.subject
	resp.ClientID = t.client
	resp.Scope = oidc.SpaceDelimitedArray(t.scopes)
	resp.TokenType = oidc.BearerToken
	resp.Expiration = oidc.FromTime(t.expiry)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID gives a service account's public key for its JWT
// bearer assertions.
func (s *storage) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.getClient(clientID)
	if !ok || c.saPub == nil || c.saKeyID != keyID {
		return nil, errNotFound
	}
	return &jose.JSONWebKey{Key: c.saPub, KeyID: keyID, Algorithm: string(jose.RS256), Use: "sig"}, nil
}

func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s *storage) Health(context.Context) error { return nil }

// checkSubject lets a service account name another subject, as Google's
// domain-wide delegation does, when its mayAct allows it.
func (s *storage) checkSubject(r *oidc.JWTTokenRequest) error {
	c, ok := s.getClient(r.Issuer)
	if !ok || c.mayAct == nil || !c.mayAct(r.Subject) {
		return oidc.ErrSubjectInvalid
	}
	return nil
}
