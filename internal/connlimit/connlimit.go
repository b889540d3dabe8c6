// Package connlimit bounds connections: in total and per client IP, shared by
// every front-end so that the limits of docs/contract.md §8 (limits.max_connections,
// limits.max_connections_per_ip) hold across protocols.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Limiter counts live connections. The zero value is not usable; use New.
type Limiter struct {
	mu    sync.Mutex
	max   int
	perIP int
	total int
	byIP  map[netip.Addr]int
}

// New returns a limiter. max or perIP of zero or less means unlimited.
func New(max, perIP int) *Limiter {
	return &Limiter{max: max, perIP: perIP, byIP: make(map[netip.Addr]int)}
}

// SetLimits changes the limits for new connections (on reload).
func (l *Limiter) SetLimits(max, perIP int) {
	l.mu.Lock()
	l.max, l.perIP = max, perIP
	l.mu.Unlock()
}

// Acquire takes a slot for ip. When ok is false the connection must be
// refused; otherwise release must be called exactly once when it closes.
func (l *Limiter) Acquire(ip netip.Addr) (release func(), ok bool) {
	ip = ip.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return nil, false
	}
	if l.perIP > 0 && l.byIP[ip] >= l.perIP {
		return nil, false
	}
	l.total++
	l.byIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.total--
			if n := l.byIP[ip] - 1; n > 0 {
				l.byIP[ip] = n
			} else {
				delete(l.byIP, ip)
			}
			l.mu.Unlock()
		})
	}, true
}

// Total returns the number of live connections.
func (l *Limiter) Total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// RemoteIP returns the IP address of a connection's remote end (unmapped).
func RemoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
