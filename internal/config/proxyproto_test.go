package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestProxyProtocolKeys: listen.proxy_protocol defaults (off, 5s), parses
// CIDRs and refuses a bad timeout or CIDR with file:line.
func TestProxyProtocolKeys(t *testing.T) {
	c, err := Parse("legate.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if pp := c.Listen.ProxyProtocol; len(pp.Trusted) != 0 || pp.Timeout.Std() != 5*time.Second {
		t.Errorf("defaults: got %+v, want no trusted peers and 5s", pp)
	}
	with := func(lines string) string {
		return strings.Replace(minimal, "  imap: 127.0.0.1:10143\n", "  imap: 127.0.0.1:10143\n  proxy_protocol:\n"+lines, 1)
	}
	c, err = Parse("legate.yaml", []byte(with("    trusted: [10.0.0.5/32, fd00::/64]\n    timeout: 2s\n")))
	if err != nil {
		t.Fatal(err)
	}
	if pp := c.Listen.ProxyProtocol; len(pp.Trusted) != 2 || pp.Trusted[0] != netip.MustParsePrefix("10.0.0.5/32") || pp.Timeout.Std() != 2*time.Second {
		t.Errorf("got %+v", pp)
	}
	for _, tt := range []struct{ lines, want string }{
		{"    timeout: 0s\n", "legate.yaml:4: listen.proxy_protocol.timeout: must be more than zero and at most 1m, got 0s"},
		{"    timeout: 2m\n", "legate.yaml:4: listen.proxy_protocol.timeout: must be more than zero and at most 1m, got 2m0s"},
		{"    trusted: [10.0.0.300/8]\n", "legate.yaml:4: listen.proxy_protocol.trusted[0]"},
	} {
		_, err := Parse("legate.yaml", []byte(with(tt.lines)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.lines, err, tt.want)
		}
	}
}
