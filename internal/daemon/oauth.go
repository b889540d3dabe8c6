package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/oauth"
	"github.com/legate-proxy/legate/internal/upstream"
)

// tokenCaches keeps the oauth2 token caches across reloads: a token source
// whose settings and key material are unchanged keeps its cache, and the
// tokens in it, so a reload does not send every user's next login to the
// token endpoint (with Google's per-user tokens, thousands of requests at
// once). Sources no longer in force are dropped at publish (retain).
type tokenCaches struct {
	mu sync.Mutex
	m  map[string]*oauth.Cache // by fingerprint
}

// get returns the cache of fingerprint fp, made with mk if there is none.
func (t *tokenCaches) get(fp string, mk func() *oauth.Cache) *oauth.Cache {
	if t == nil {
		return mk()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.m[fp]; c != nil {
		return c
	}
	if t.m == nil {
		t.m = map[string]*oauth.Cache{}
	}
	c := mk()
	t.m[fp] = c
	return c
}

// retain drops every cache but those the upstreams in force use.
func (t *tokenCaches) retain(ups ...*upstream.Config) {
	if t == nil {
		return
	}
	var inUse []upstream.TokenSource
	for _, u := range ups {
		if u != nil && u.OAuth != nil {
			inUse = append(inUse, u.OAuth.Tokens)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for fp, c := range t.m {
		if !slices.Contains(inUse, upstream.TokenSource(c)) {
			delete(t.m, fp)
		}
	}
}

// tokenFingerprint names a token source by everything that makes its
// tokens: the key, grant, endpoint, client, audience, scopes and the
// contents of its secret, key, certificate or service-account files (a
// rotated secret is a new source). Only its hash is kept.
func tokenFingerprint(key string, o config.OAuth2) (string, error) {
	h := sha256.New()
	for _, v := range []string{key, o.Grant, o.TokenURL, o.ClientID, o.Audience, o.Scope} {
		fmt.Fprintf(h, "%d:%s;", len(v), v)
	}
	for _, f := range []string{o.ClientSecretFile, o.PrivateKeyFile, o.CertificateFile, o.ServiceAccountFile} {
		if f == "" {
			h.Write([]byte("-;"))
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(b)
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// oauthLogin builds the token login of an upstream with auth: oauth2: the
// token source its grant names, behind a cache (kept from the previous
// configuration when the source is unchanged, see tokenCaches). Errors
// name the key and the file, never a secret.
func oauthLogin(u config.UpstreamMail, key string, obs oauth.Observer, caches *tokenCaches) (*upstream.OAuth, error) {
	o := u.OAuth2
	k := key + ".oauth2"
	var scopes []string
	if o.Scope != "" {
		scopes = strings.Fields(o.Scope)
	}
	var f oauth.Fetcher
	switch o.Grant {
	case config.GrantJWTBearer:
		sa, err := oauth.ReadServiceAccount(o.ServiceAccountFile)
		if err != nil {
			return nil, fmt.Errorf("%s.service_account_file: %w", k, err)
		}
		f = &oauth.JWTBearer{Account: sa, TokenURL: o.TokenURL, Audience: o.Audience, Scopes: scopes}
	default:
		cc := &oauth.ClientCredentials{TokenURL: o.TokenURL, ClientID: o.ClientID, Audience: o.Audience, Scopes: scopes}
		if o.PrivateKeyFile != "" {
			key, cert, err := oauth.ReadKeyPair(o.PrivateKeyFile, o.CertificateFile)
			if err != nil {
				return nil, fmt.Errorf("%s.private_key_file: %w", k, err)
			}
			cc.Key, cc.Cert = key, cert
		} else {
			s, err := config.ReadSecretFile(o.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("%s.client_secret_file: %w", k, err)
			}
			cc.Secret = s
		}
		f = cc
	}
	mech := oauth.MechXOAUTH2
	if o.Mechanism == config.MechOAUTHBEARER {
		mech = oauth.MechOAUTHBEARER
	}
	fp, err := tokenFingerprint(key, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	return &upstream.OAuth{
		Mechanism: mech,
		Tokens:    caches.get(fp, func() *oauth.Cache { return oauth.NewCache(f, oauth.CacheOptions{Name: key, Observer: obs}) }),
		ByName:    o.MailboxAttribute == config.MailboxName,
	}, nil
}

// tokenObserver passes token-source events to the daemon's metrics, which
// are built after the upstreams.
type tokenObserver struct{ d *Daemon }

func (o tokenObserver) TokenFetched(source string, took time.Duration, err error) {
	o.d.metrics.TokenFetched(source, took, err)
}

func (o tokenObserver) TokenCacheHit(source string) { o.d.metrics.TokenCacheHit(source) }

// tokenReady reports whether an oauth2 upstream's token source works: an
// app-only source must hand out a token (cached or fresh); a per-user
// source must not have failed its last fetch.
func tokenReady(ctx context.Context, o *upstream.OAuth) error {
	c, ok := o.Tokens.(*oauth.Cache)
	if !ok {
		return nil
	}
	if !c.PerSubject() {
		if _, err := c.Token(ctx, ""); err != nil {
			return err
		}
	}
	return c.Err()
}
