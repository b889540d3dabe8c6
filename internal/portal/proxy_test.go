package portal

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/legate-proxy/legate/internal/config"
)

func TestClientOf(t *testing.T) {
	trusted := &settings{cfg: config.Portal{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}}}
	for _, tc := range []struct {
		name, peer string
		hdr        map[string]string
		ip, scheme string
	}{
		{"untrusted peer, XFF ignored", "192.0.2.7:4000", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"}, "192.0.2.7", ""},
		{"trusted proxy", "127.0.0.1:4000", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}, "203.0.113.9", "https"},
		{"client-written entries left of the last untrusted hop", "127.0.0.1:4000", map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.1.1.1"}, "203.0.113.9", ""},
		{"garbage stops at the proxy", "127.0.0.1:4000", map[string]string{"X-Forwarded-For": "not-an-ip"}, "127.0.0.1", ""},
		{"Forwarded", "10.0.0.5:4000", map[string]string{"Forwarded": `for="[2001:db8::7]:1234";proto=https, for=10.0.0.6`}, "2001:db8::7", "https"},
		{"no header from a proxy", "127.0.0.1:4000", nil, "127.0.0.1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			c := clientOf(r, trusted)
			if c.ip.String() != tc.ip || c.scheme != tc.scheme {
				t.Errorf("got ip %s scheme %q, want %s %q", c.ip, c.scheme, tc.ip, tc.scheme)
			}
		})
	}
}
