package config

import (
	"strings"
	"testing"
)

const portalBase = `listen:
  portal: %s
upstream:
  imap: {address: 127.0.0.1:143, tls: none, master_user: legate, master_password_file: imap.secret}
tls: {cert_file: tls.crt, key_file: tls.key}
portal:
  external_url: %s
  oidc: {issuer: https://login.example.com, client_id: legate, client_secret_file: oidc.secret}
`

func TestPortalBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name, listen, ext, extra string
		want                     bool
	}{
		{"loopback, trusted, https", "127.0.0.1:8080", "https://l.example", "  trusted_proxies: [127.0.0.1/32]\n", true},
		{"proxy network", "10.1.2.3:8080", "https://l.example", "  trusted_proxies: [10.0.0.0/8]\n", true},
		{"address outside the proxies", "192.0.2.1:8080", "https://l.example", "  trusted_proxies: [10.0.0.0/8]\n", false},
		{"wildcard", "0.0.0.0:8080", "https://l.example", "  trusted_proxies: [10.0.0.0/8]\n", false},
		{"no trusted proxies", "127.0.0.1:8080", "https://l.example", "", false},
		{"http external URL", "127.0.0.1:8080", "http://127.0.0.1:8080", "  trusted_proxies: [127.0.0.1/32]\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(strings.Replace(portalBase, "%s", tc.listen, 1), "%s", tc.ext, 1) + tc.extra
			c, err := Parse("legate.yaml", []byte(src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.PortalBehindProxy(); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPortalTrustedProxiesErrors(t *testing.T) {
	src := minimal + "portal:\n  trusted_proxies: [0.0.0.0/0, 10.0.0.1/8, bogus]\n"
	got := strings.Join(parseErrors(t, src), "\n")
	for _, want := range []string{
		`legate.yaml:12: portal.trusted_proxies[0]: 0.0.0.0/0 trusts every address`,
		`legate.yaml:12: portal.trusted_proxies[1]: "10.0.0.1/8" has host bits set`,
		`legate.yaml:12: portal.trusted_proxies[2]: "bogus" is not a CIDR`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors:\n%s\nwant a line starting %q", got, want)
		}
	}
	// Without tls.*, a portal on a proxy network is allowed only behind a proxy.
	plain := "listen:\n  portal: 10.1.2.3:8080\nupstream:\n  imap: {address: 127.0.0.1:143, tls: none, master_user: legate, master_password_file: imap.secret}\n" +
		"portal:\n  external_url: https://l.example\n  oidc: {issuer: https://login.example.com, client_id: legate, client_secret_file: oidc.secret}\n"
	if errs := strings.Join(parseErrors(t, plain), "\n"); !strings.Contains(errs, "listen.portal: the portal serves HTTPS") {
		t.Errorf("portal on 10.1.2.3 without tls and proxies: got %s, want the HTTPS error", errs)
	}
	if _, err := Parse("legate.yaml", []byte(plain+"  trusted_proxies: [10.0.0.0/8]\n")); err != nil && strings.Contains(err.Error(), "listen.portal") {
		t.Errorf("portal on 10.1.2.3 behind trusted proxies 10/8: got %v, want no listen.portal error", err)
	}
}
