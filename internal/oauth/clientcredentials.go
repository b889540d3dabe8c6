package oauth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// assertionType is RFC 7523's client_assertion_type for a JWT.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ClientCredentials fetches app-only tokens with the client credentials
// grant. Exactly one of Secret and Key is set.
type ClientCredentials struct {
	TokenURL string
	ClientID string
	// Secret is the client secret, sent with HTTP basic authentication.
	Secret string
	// Key signs a client assertion (RS256) instead of a secret; Cert is its
	// certificate, whose SHA-1 and SHA-256 thumbprints go into the x5t and
	// x5t#S256 header fields (Microsoft Entra's certificate credentials).
	Key  *rsa.PrivateKey
	Cert *x509.Certificate
	// Audience is the assertion's aud; empty means TokenURL.
	Audience string
	Scopes   []string
	// HTTP is the client for the token endpoint; nil means a client with a
	// 10s timeout.
	HTTP *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// PerSubject implements Fetcher: client-credential tokens are app-only.
func (c *ClientCredentials) PerSubject() bool { return false }

// Fetch implements Fetcher.
func (c *ClientCredentials) Fetch(ctx context.Context, _ string) (Token, error) {
	cfg := clientcredentials.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.Secret,
		TokenURL:     c.TokenURL,
		Scopes:       c.Scopes,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	if c.Key != nil {
		a, err := c.assertion()
		if err != nil {
			return Token{}, fmt.Errorf("%w: client assertion: %w", ErrUnavailable, err)
		}
		cfg.AuthStyle = oauth2.AuthStyleInParams
		cfg.EndpointParams = url.Values{
			"client_assertion_type": {assertionType},
			"client_assertion":      {a},
		}
	}
	t, err := cfg.Token(withHTTP(ctx, c.HTTP))
	return convert(t, err)
}

// assertion builds a fresh RFC 7523 client assertion, signed RS256.
func (c *ClientCredentials) assertion() (string, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	t := now()
	hdr := map[string]string{"alg": "RS256", "typ": "JWT"}
	if c.Cert != nil {
		s1 := sha1.Sum(c.Cert.Raw)
		s256 := sha256.Sum256(c.Cert.Raw)
		hdr["x5t"] = base64.RawURLEncoding.EncodeToString(s1[:])
		hdr["x5t#S256"] = base64.RawURLEncoding.EncodeToString(s256[:])
		// Some servers look keys up by kid; the SHA-1 thumbprint in hex is
		// what Entra shows as the certificate's thumbprint.
		hdr["kid"] = hex.EncodeToString(s1[:])
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	aud := c.Audience
	if aud == "" {
		aud = c.TokenURL
	}
	claims := map[string]any{
		"iss": c.ClientID,
		"sub": c.ClientID,
		"aud": aud,
		"jti": hex.EncodeToString(jti[:]),
		"iat": t.Unix(),
		"nbf": t.Unix(),
		"exp": t.Add(5 * time.Minute).Unix(),
	}
	return signRS256(c.Key, hdr, claims)
}

func signRS256(key *rsa.PrivateKey, hdr map[string]string, claims map[string]any) (string, error) {
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// withHTTP makes x/oauth2 use hc (or a client with a timeout).
func withHTTP(ctx context.Context, hc *http.Client) context.Context {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return context.WithValue(ctx, oauth2.HTTPClient, hc)
}

// convert maps x/oauth2's answer to a Token. Errors keep the endpoint's
// RFC 6749 error code and description and drop the response body.
func convert(t *oauth2.Token, err error) (Token, error) {
	if err != nil {
		if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
			status := ""
			if re.Response != nil {
				status = re.Response.Status
			}
			if re.ErrorCode != "" {
				return Token{}, fmt.Errorf("%w: token endpoint said %s (%.200s) [%s]", ErrUnavailable, re.ErrorCode, re.ErrorDescription, status)
			}
			return Token{}, fmt.Errorf("%w: token endpoint answered %s", ErrUnavailable, status)
		}
		return Token{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if t.AccessToken == "" {
		return Token{}, fmt.Errorf("%w: token endpoint sent no access token", ErrUnavailable)
	}
	exp := t.Expiry
	if exp.IsZero() {
		// RFC 6749 makes expires_in optional; assume a short life.
		exp = time.Now().Add(5 * time.Minute)
	}
	return Token{Access: t.AccessToken, Expiry: exp}, nil
}
