package portal

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// The portal behind a reverse proxy (portal.trusted_proxies): a request
// whose peer is a trusted proxy is read with the client address of
// X-Forwarded-For (or Forwarded, RFC 7239) and the scheme of
// X-Forwarded-Proto (or Forwarded proto=). From any other peer these
// headers are ignored: the client is the peer. Cookies stay Secure and the
// security headers are the same either way.

type ctxKey int

const (
	clientKey ctxKey = iota
	settingsKey
)

// settingsOf returns the settings the request started with (loaded once
// by the outermost middleware, so a reload never splits a request).
func (p *Portal) settingsOf(r *http.Request) *settings {
	if st, ok := r.Context().Value(settingsKey).(*settings); ok {
		return st
	}
	return p.set.Load()
}

// client is what the portal knows of the request's origin.
type client struct {
	ip netip.Addr // the client's address (the peer's, unless a trusted proxy said otherwise)
	// proxied: the peer is a trusted proxy; scheme is what it said ("" unsaid).
	proxied bool
	scheme  string
}

// maxForwardHops bounds how many X-Forwarded-For entries are looked at.
const maxForwardHops = 32

// clientOf works out the client of r under the settings s.
func clientOf(r *http.Request, s *settings) client {
	peer := addrOf(r.RemoteAddr)
	c := client{ip: peer}
	if !peer.IsValid() || !s.trusted(peer) {
		return c
	}
	c.proxied = true
	var hops []string
	if fw := r.Header.Values("Forwarded"); len(fw) > 0 {
		for _, elem := range splitList(fw) {
			for _, pair := range strings.Split(elem, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				v = strings.Trim(v, `"`)
				switch strings.ToLower(k) {
				case "for":
					hops = append(hops, v)
				case "proto":
					c.scheme = strings.ToLower(v)
				}
			}
		}
	} else {
		hops = splitList(r.Header.Values("X-Forwarded-For"))
		if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
			c.scheme = strings.ToLower(strings.TrimSpace(p))
		}
	}
	if len(hops) > maxForwardHops {
		hops = hops[len(hops)-maxForwardHops:]
	}
	// From the right: the nearest address that is not a trusted proxy is
	// the client (addresses further left were written by the client).
	for i := len(hops) - 1; i >= 0; i-- {
		a := addrOf(hops[i])
		if !a.IsValid() {
			break // unknown or obfuscated: stop at the last proxy we trust
		}
		c.ip = a
		if !s.trusted(a) {
			break
		}
	}
	return c
}

// splitList splits comma-separated header values.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// addrOf reads "ip", "ip:port", "[v6]" or "[v6]:port".
func addrOf(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// withClient records the request's client in its context. A proxied
// request that the proxy says came over plain http is sent to the https
// external URL (the cookies are Secure: a plain-http page could not work).
func (p *Portal) withClient(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := clientOf(r, p.settingsOf(r))
		if c.proxied && c.scheme == "http" && p.external.Scheme == "https" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			http.Redirect(w, r, p.external.String()+r.URL.RequestURI(), http.StatusPermanentRedirect)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey, c)))
	})
}

// clientIP returns the client address of r ("" if unknown).
func clientIP(r *http.Request) string {
	if c, ok := r.Context().Value(clientKey).(client); ok && c.ip.IsValid() {
		return c.ip.String()
	}
	return ""
}

// reqLog is the portal's logger with the request's client address.
func (p *Portal) reqLog(r *http.Request) *slog.Logger {
	return p.log.With("ip", clientIP(r))
}
