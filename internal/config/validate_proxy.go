package config

import (
	"fmt"
	"time"
)

// proxyProtocol checks listen.proxy_protocol.
func (v *validator) proxyProtocol() {
	pp := v.c.Listen.ProxyProtocol
	for i, n := range pp.Trusted {
		if !n.IsValid() {
			v.add(fmt.Sprintf("listen.proxy_protocol.trusted[%d]", i), "is not a CIDR")
		}
	}
	if d := pp.Timeout.Std(); d <= 0 || d > time.Minute {
		v.add("listen.proxy_protocol.timeout", "must be more than zero and at most 1m, got %s", d)
	}
}
