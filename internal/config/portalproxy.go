package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
)

// PortalBehindProxy reports whether the portal serves plain HTTP behind a
// TLS-terminating reverse proxy while tls.* stays for the mail listeners:
// portal.trusted_proxies is set, portal.external_url is https, and
// listen.portal is bound to a loopback address or to an address inside
// portal.trusted_proxies (never a wildcard address).
func (c *Config) PortalBehindProxy() bool {
	p := c.Portal
	if c.Listen.Portal == "" || len(p.TrustedProxies) == 0 {
		return false
	}
	if u, err := url.Parse(p.ExternalURL); err != nil || u.Scheme != "https" {
		return false
	}
	if isLoopback(c.Listen.Portal) {
		return true
	}
	host, _, err := net.SplitHostPort(c.Listen.Portal)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.IsUnspecified() {
		return false
	}
	a = a.Unmap()
	return slices.ContainsFunc(p.TrustedProxies, func(n netip.Prefix) bool { return n.Contains(a) })
}

// portalProxies checks portal.trusted_proxies.
func (v *validator) portalProxies() {
	for i, n := range v.c.Portal.TrustedProxies {
		key := fmt.Sprintf("portal.trusted_proxies[%d]", i)
		switch {
		case !n.IsValid():
			v.add(key, "is not a CIDR")
		case n.Bits() == 0:
			v.add(key, "%s trusts every address: anyone could claim any client address; name the proxies' networks", n)
		}
	}
}
