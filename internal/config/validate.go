package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// validator collects the problems of one Validate pass.
type validator struct {
	c    *Config
	errs Errors
}

// Validate checks the whole configuration and returns every problem found
// (an Errors, each naming file:line and the key), or nil. Parse and Load
// call it; call it again after changing a Config in code.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.listen()
	v.proxyProtocol()
	v.tls()
	v.storage()
	v.upstreams()
	v.directory()
	v.policy()
	v.portal()
	v.portalProxies()
	v.limits()
	v.log()
	v.audit()
	return v.errs.err()
}

// line returns the line of key, or of its nearest ancestor given in the file.
func (c *Config) line(key string) int {
	for key != "" {
		if l, ok := c.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// add records a problem with key, unless decoding already reported one.
func (v *validator) add(key, format string, args ...any) {
	if v.c.bad[key] {
		return
	}
	v.errs = append(v.errs, &Error{File: v.c.file, Line: v.c.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// required reports key when value is empty.
func (v *validator) required(key, value, why string) {
	if strings.TrimSpace(value) == "" {
		v.add(key, "missing; required %s", why)
	}
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.add(key, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
}

func (v *validator) atLeast(key string, value, low int64) {
	if value < low {
		v.add(key, "must be at least %d, got %d", low, value)
	}
}

// anySet reports whether any key under prefix was given in the file.
func (c *Config) anySet(prefix string) bool {
	for k := range c.lines {
		if strings.HasPrefix(k, prefix+".") {
			return true
		}
	}
	return false
}

// hostPort checks a host:port address. needHost: the host may not be empty
// (upstreams); minPort: 0 allows port 0 (listeners in tests).
func hostPort(addr string, needHost bool, minPort int) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < minPort || p > 65535 {
		return fmt.Errorf("%q: port must be a number from %d to 65535", addr, minPort)
	}
	if host == "" {
		if needHost {
			return fmt.Errorf("%q: host is missing", addr)
		}
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%q: %q is not a host name or IP address", addr, host)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// isLoopback reports whether a listen address binds only to loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// maxSocketPath is the usable length of sun_path (108 on Linux, 104 on BSDs).
const maxSocketPath = 104

func (v *validator) listen() {
	l := v.c.Listen
	for _, x := range []struct{ key, addr string }{
		{"listen.imap", l.IMAP}, {"listen.imaps", l.IMAPS},
		{"listen.submission", l.Submission}, {"listen.submissions", l.Submissions},
		{"listen.ldap", l.LDAP}, {"listen.ldaps", l.LDAPS},
		{"listen.http", l.HTTP}, {"listen.portal", l.Portal},
	} {
		if x.addr == "" {
			continue
		}
		if err := hostPort(x.addr, false, 0); err != nil {
			v.add(x.key, "%v", err)
		}
	}
	if base := filepath.Base(l.Admin); l.Admin != "" && hostPort(base, true, 1) == nil && strings.Contains(base, ":") {
		v.add("listen.admin", "is a unix socket path (e.g. /run/legate/admin.sock), not host:port")
	} else if l.Admin != "" && len(l.Admin) > maxSocketPath {
		v.add("listen.admin", "unix socket path %q is %d bytes, longer than the system limit of %d", l.Admin, len(l.Admin), maxSocketPath)
	}
	if l.Decision != "" && len(l.Decision) > maxSocketPath {
		v.add("listen.decision", "unix socket path %q is %d bytes, longer than the system limit of %d", l.Decision, len(l.Decision), maxSocketPath)
	} else if l.Decision != "" && l.Decision == l.Admin {
		v.add("listen.decision", "must not be the admin socket")
	}
	if a := l.AuthHTTP; a != "" {
		if path, ok := strings.CutPrefix(a, "unix:"); ok {
			if path == "" || len(path) > maxSocketPath {
				v.add("listen.auth_http", "unix socket path %q is empty or longer than %d bytes", path, maxSocketPath)
			}
		} else if host, _, err := net.SplitHostPort(a); err != nil || hostPort(a, true, 1) != nil {
			v.add("listen.auth_http", "%q is not host:port or unix:/path", a)
		} else if ip, err := netip.ParseAddr(host); (err != nil && host != "localhost") || (err == nil && !ip.IsLoopback()) {
			v.add("listen.auth_http", "must be a loopback address or a unix:/path socket: nginx sends users' passwords to it")
		}
		v.required("auth_http.header", v.c.AuthHTTP.Header, "with listen.auth_http (the header nginx sends, auth_http_header)")
		v.required("auth_http.secret_file", v.c.AuthHTTP.SecretFile, "with listen.auth_http")
	}
}

func (v *validator) tls() {
	t := v.c.TLS
	if t.CertFile != "" && t.KeyFile == "" {
		v.add("tls.key_file", "missing; required with tls.cert_file")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		v.add("tls.cert_file", "missing; required with tls.key_file")
	}
	l := v.c.Listen
	if !t.Enabled() {
		for _, x := range []struct{ key, addr string }{
			{"listen.imaps", l.IMAPS}, {"listen.submissions", l.Submissions}, {"listen.ldaps", l.LDAPS},
		} {
			if x.addr != "" {
				v.add(x.key, "implicit TLS needs tls.cert_file and tls.key_file")
			}
		}
		if l.Portal != "" && !isLoopback(l.Portal) && !v.c.PortalBehindProxy() {
			v.add("listen.portal", "the portal serves HTTPS: set tls.cert_file and tls.key_file (or bind it to loopback behind a TLS proxy)")
		}
		p := v.c.Policy
		if p.RequireTLS && !p.AllowPlaintextLoopback {
			for _, x := range []struct{ key, addr string }{
				{"listen.imap", l.IMAP}, {"listen.submission", l.Submission}, {"listen.ldap", l.LDAP},
			} {
				if x.addr != "" {
					v.add(x.key, "no one could log in here: policy.require_tls is true but STARTTLS needs tls.cert_file and tls.key_file; set them, or for a loopback try-out set policy.allow_plaintext_loopback: true")
				}
			}
		}
	}
}

func (v *validator) storage() {
	s := v.c.Storage
	v.oneOf("storage.backend", s.Backend, "bolt", "etcd")
	v.required("storage.path", s.Path, "for the bolt database")
	v.required("storage.key_file", s.KeyFile, "for the HMAC server key")
	if s.Backend != "etcd" {
		return
	}
	e := s.Etcd
	if len(e.Endpoints) == 0 {
		v.add("storage.etcd.endpoints", "missing; required when storage.backend is etcd")
	}
	for i, ep := range e.Endpoints {
		key := fmt.Sprintf("storage.etcd.endpoints[%d]", i)
		if u, err := url.Parse(ep); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			if err := hostPort(u.Host, true, 1); err != nil {
				v.add(key, "%v", err)
			}
		} else if err := hostPort(ep, true, 1); err != nil {
			v.add(key, "%q is neither host:port nor an http(s) URL", ep)
		}
	}
	v.required("storage.etcd.prefix", e.Prefix, "as the key prefix in etcd")
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		v.add("storage.etcd.tls", "cert_file and key_file go together")
	}
	if e.Username != "" && e.PasswordFile == "" {
		v.add("storage.etcd.password_file", "missing; required with storage.etcd.username")
	}
	if e.PasswordFile != "" && e.Username == "" {
		v.add("storage.etcd.username", "missing; required with storage.etcd.password_file")
	}
	if e.DialTimeout <= 0 {
		v.add("storage.etcd.dial_timeout", "must be more than zero")
	}
}

func (v *validator) limits() {
	l := v.c.Limits
	v.atLeast("limits.max_connections", int64(l.MaxConnections), 1)
	v.atLeast("limits.max_connections_per_ip", int64(l.MaxConnectionsPerIP), 1)
	if l.MaxConnectionsPerIP > l.MaxConnections && l.MaxConnections >= 1 {
		v.add("limits.max_connections_per_ip", "%d is more than limits.max_connections (%d)", l.MaxConnectionsPerIP, l.MaxConnections)
	}
	for _, x := range []struct {
		key string
		d   Duration
	}{
		{"limits.preauth_timeout", l.PreauthTimeout},
		{"limits.idle_timeout", l.IdleTimeout},
		{"limits.dial_timeout", l.DialTimeout},
		{"throttle.window", v.c.Throttle.Window},
	} {
		if x.d <= 0 {
			v.add(x.key, "must be more than zero")
		}
	}
	if l.RecheckInterval < 0 {
		v.add("limits.recheck_interval", "must not be negative (0 disables the sweep)")
	}
	v.atLeast("limits.max_line_length", int64(l.MaxLineLength), 1000)
	v.atLeast("limits.max_literal_size", int64(l.MaxLiteralSize), 1)
	v.atLeast("limits.max_message_size", int64(l.MaxMessageSize), 1)
	v.atLeast("limits.max_recipients", int64(l.MaxRecipients), 1)
	v.atLeast("limits.max_pdu_size", int64(l.MaxPDUSize), 1024)
	v.atLeast("throttle.max_failures_per_ip", int64(v.c.Throttle.MaxFailuresPerIP), 1)
	v.atLeast("throttle.max_failures_per_user", int64(v.c.Throttle.MaxFailuresPerUser), 1)
}

func (v *validator) log() {
	v.oneOf("log.format", v.c.Log.Format, "text", "json")
	v.oneOf("log.level", v.c.Log.Level, "debug", "info", "warn", "error")
}
