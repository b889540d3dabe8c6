package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/oauth"
	"github.com/legate-proxy/legate/internal/upstream"
)

// oauthLogin builds the token login of an upstream with auth: oauth2: the
// token source its grant names, behind a cache. Errors name the key and
// the file, never a secret.
func oauthLogin(u config.UpstreamMail, key string, obs oauth.Observer) (*upstream.OAuth, error) {
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
	return &upstream.OAuth{
		Mechanism: mech,
		Tokens:    oauth.NewCache(f, oauth.CacheOptions{Name: key, Observer: obs}),
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
