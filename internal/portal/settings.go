package portal

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/legate-proxy/legate/internal/config"
)

// settings is the reloadable part of the portal: one immutable value,
// built and checked whole by newSettings and published by Reload through
// an atomic pointer. A request loads it once and uses that value to the
// end, so it never sees half of an old and half of a new configuration.
type settings struct {
	cfg          config.Portal // deep copy; never written after publishing
	reauthAfter  time.Duration
	clientSecret string
	// provider is the OIDC client of these settings. Reloads that keep
	// the issuer, client id and secret share it (no new discovery).
	provider *providerCache
}

// newSettings checks a portal section and builds settings from it. secret
// is the OIDC client secret; "" means read cfg.OIDC.ClientSecretFile.
func newSettings(cfg config.Portal, secret string) (*settings, error) {
	cfg.OIDC.MFAAMR = slices.Clone(cfg.OIDC.MFAAMR)
	cfg.TrustedProxies = slices.Clone(cfg.TrustedProxies)
	if cfg.OIDC.UsernameClaim == "" {
		cfg.OIDC.UsernameClaim = "preferred_username"
	}
	if cfg.OIDC.Issuer == "" || cfg.OIDC.ClientID == "" {
		return nil, fmt.Errorf("portal: portal.oidc.issuer and portal.oidc.client_id are required")
	}
	for i, n := range cfg.TrustedProxies {
		if !n.IsValid() {
			return nil, fmt.Errorf("portal: portal.trusted_proxies[%d] is not a CIDR", i)
		}
	}
	s := &settings{cfg: cfg, reauthAfter: cfg.ReauthAfter.Std(), clientSecret: secret}
	if s.reauthAfter <= 0 {
		s.reauthAfter = 10 * time.Minute
	}
	if s.clientSecret == "" && cfg.OIDC.ClientSecretFile != "" {
		var err error
		if s.clientSecret, err = config.ReadSecretFile(cfg.OIDC.ClientSecretFile); err != nil {
			return nil, fmt.Errorf("portal: %w", err)
		}
	}
	return s, nil
}

// trusted reports whether a peer is one of portal.trusted_proxies.
func (s *settings) trusted(a netip.Addr) bool {
	a = a.Unmap()
	return slices.ContainsFunc(s.cfg.TrustedProxies, func(n netip.Prefix) bool { return n.Contains(a) })
}

// Reload applies a new portal section: client settings, reauth_after, the
// MFA rules, the username claim, trusted proxies and the OIDC client
// (issuer, client id, client secret file; a changed client is discovered
// again at the next sign-in). The external URL and the session key are
// fixed at start: a change of them is logged and needs a restart. On error
// the running settings stay.
func (p *Portal) Reload(cfg config.Portal) error {
	s, err := newSettings(cfg, "")
	if err != nil {
		return err
	}
	old := p.set.Load()
	if cfg.OIDC.ClientSecretFile == "" {
		s.clientSecret = old.clientSecret // given in Options, not from a file
	}
	if ext := strings.TrimSuffix(cfg.ExternalURL, "/"); ext != "" && ext != p.external.String() {
		p.log.Warn("portal: portal.external_url changed; it takes effect at the next restart", "running", p.external.String())
	}
	if cfg.SessionKeyFile != old.cfg.SessionKeyFile {
		p.log.Warn("portal: portal.session_key_file changed; it takes effect at the next restart")
	}
	s.provider = old.provider
	if !sameClient(old, s) {
		s.provider = newProviderCache(s.cfg.OIDC.Issuer)
	}
	p.set.Store(s)
	p.log.Info("portal: settings reloaded")
	return nil
}

func sameClient(a, b *settings) bool {
	return a.cfg.OIDC.Issuer == b.cfg.OIDC.Issuer && a.cfg.OIDC.ClientID == b.cfg.OIDC.ClientID &&
		a.clientSecret == b.clientSecret
}

// providerCache discovers the issuer once (lazily: the portal starts even
// when the provider is briefly down; a failed discovery is retried next
// time) and holds the Content-Security-Policy that names it.
type providerCache struct {
	issuer string
	mu     sync.Mutex
	v      *idp
	csp    atomic.Pointer[string]
}

func newProviderCache(issuer string) *providerCache {
	c := &providerCache{issuer: issuer}
	c.csp.Store(buildCSP(issuer, ""))
	return c
}

// idp is the discovered provider.
type idp struct {
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// provider returns the discovered provider of the current settings s.
func (p *Portal) provider(ctx context.Context, s *settings) (*idp, error) {
	c := s.provider
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v != nil {
		return c.v, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.httpClient), 15*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(ctx, c.issuer)
	if err != nil {
		return nil, fmt.Errorf("portal: discover %s: %w", c.issuer, err)
	}
	c.v = &idp{
		oauth: oauth2.Config{ClientID: s.cfg.OIDC.ClientID, ClientSecret: s.clientSecret,
			Endpoint: prov.Endpoint(), RedirectURL: p.RedirectURL(),
			Scopes: []string{oidc.ScopeOpenID, "profile", "email"}},
		verifier: prov.Verifier(&oidc.Config{ClientID: s.cfg.OIDC.ClientID}),
	}
	c.csp.Store(buildCSP(c.issuer, prov.Endpoint().AuthURL))
	return c.v, nil
}
