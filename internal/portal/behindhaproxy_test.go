package portal_test

import (
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/portal/portaltest"
	"github.com/legate-proxy/legate/internal/proxyproto"
	"github.com/legate-proxy/legate/internal/testenv"
)

// TestBehindHAProxy (#16.1): HAProxy (send-proxy-v2 and send-proxy) in
// front of the portal, whose listener takes PROXY headers from 127.0.0.1
// (listen.proxy_protocol.trusted): a sign-in from 127.0.0.2 is logged
// under 127.0.0.2, not HAProxy's 127.0.0.1. X-Forwarded-For is then
// judged against that client address: ignored unless the PROXY source is
// in portal.trusted_proxies — so trusting the balancer's own address
// there no longer lets any client forge its address.
func TestBehindHAProxy(t *testing.T) {
	for _, tc := range []struct {
		name, send, trusted, want string
	}{
		{"v2, no trusted proxies", "send-proxy-v2", "", "127.0.0.2"},
		{"v1, no trusted proxies", "send-proxy", "", "127.0.0.2"},
		{"v2, the balancer as trusted proxy", "send-proxy-v2", "127.0.0.1/32", "127.0.0.2"},
		{"v2, the PROXY source as trusted proxy", "send-proxy-v2", "127.0.0.2/32", "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			front := testenv.FreeAddr(t)
			var direct string
			o := portaltest.Options{ExternalURL: "http://" + front,
				WrapListener: func(ln net.Listener) net.Listener {
					direct = ln.Addr().String()
					return proxyproto.Listen(ln, proxyproto.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
						Timeout: 2 * time.Second, Logger: portaltest.TestLogger(t)})
				}}
			lb, log := newLogBuffer(t)
			o.Logger = log
			if tc.trusted != "" {
				o.Configure = trustProxies(tc.trusted)
			}
			e := start(t, o)
			testenv.StartHAProxy(t, testenv.HAProxyRoute{Bind: front, Server: direct + " " + tc.send})

			u := e.NewUser(t, "alice")
			dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			u.Client.Transport = forged{rt: &http.Transport{DialContext: dialer.DialContext},
				hdr: map[string]string{"X-Forwarded-For": "203.0.113.9"}}
			if p := u.SignIn(t); p.Status != http.StatusOK {
				t.Fatalf("sign-in through haproxy: got %d, want 200", p.Status)
			}
			if got := lb.ips("portal: signed in"); len(got) != 1 || got[0] != tc.want {
				t.Errorf("sign-in logged from %v, want [%s]", got, tc.want)
			}
		})
	}
}
