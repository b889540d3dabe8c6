// Package authhttp answers nginx's mail `auth_http` requests (docs/contract.md §9): a site
// that keeps nginx as its mail proxy gets Legate's app passwords, policy,
// throttling and audit. nginx sends the credentials it read from the client
// in request headers; on allow Legate answers with the upstream address and
// the upstream master-user login nginx should use instead (Auth-User
// "alice*legate", Auth-Pass the master password), so the user's app password
// never reaches the backend.
//
// Headers nginx sends (ngx_mail_auth_http_module): Auth-Method, Auth-User,
// Auth-Pass, Auth-Protocol, Auth-Login-Attempt, Client-IP, Client-Host,
// Auth-SSL (on for TLS client connections), plus auth_http_header extras.
// Headers nginx honours in the answer: Auth-Status ("OK" or the error shown
// to the client), Auth-Server (an IP address), Auth-Port, Auth-Wait (seconds
// before the client may retry; without it nginx closes the connection),
// Auth-Error-Code (SMTP) and Auth-User / Auth-Pass (the backend login).
package authhttp

import (
	"context"
	"crypto/subtle"
	"github.com/legate-proxy/legate/internal/login"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// Login is the login service; *auth.Service is one.
type Login interface {
	Login(ctx context.Context, req login.Request) login.Result
}

// Options configure the handler.
type Options struct {
	// Login decides; required.
	Login Login
	// Header and Secret: every request must carry Header: Secret
	// (auth_http.header, auth_http.secret_file); otherwise 403.
	Header, Secret string
	// Upstream returns the upstream of a protocol (policy.IMAP, policy.SMTP)
	// in force, nil if none: its address is what nginx connects to, its
	// master user and password what nginx logs in with. It is asked only
	// when the login's Result names no upstream (login.Result.Upstream,
	// which comes from the configuration that decided).
	Upstream func(protocol string) *upstream.Config
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Handler returns the auth_http handler.
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &handler{o}
}

type handler struct{ o Options }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.o.Secret == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(h.o.Header)), []byte(h.o.Secret)) != 1 {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	proto := r.Header.Get("Auth-Protocol")
	var p string
	switch proto {
	case "imap":
		p = policy.IMAP
	case "smtp":
		p = policy.SMTP
	default:
		fail(w, proto, "Unsupported protocol", false)
		return
	}
	if m := r.Header.Get("Auth-Method"); m != "plain" && m != "login" {
		fail(w, proto, "Unsupported authentication method", false)
		return
	}
	ip, _ := netip.ParseAddr(r.Header.Get("Client-IP"))
	res := h.o.Login.Login(r.Context(), login.Request{User: r.Header.Get("Auth-User"), Secret: r.Header.Get("Auth-Pass"),
		IP: ip.Unmap(), Protocol: p, TLS: r.Header.Get("Auth-SSL") == "on", Client: "nginx/" + proto})
	switch res.Outcome {
	case policy.Allow:
	case policy.BadCredentials:
		fail(w, proto, "Invalid login or password", true)
		return
	case policy.Throttled:
		fail(w, proto, "Too many failures, try again later", false)
		return
	case policy.TLSRequired:
		fail(w, proto, "TLS required", false)
		return
	case policy.Unavailable:
		fail(w, proto, "Service unavailable, try again later", false)
		return
	default:
		fail(w, proto, "Refused: "+res.Reason, false)
		return
	}
	up, _ := res.Upstream.(*upstream.Config) // of the configuration that decided
	if up == nil {
		up = h.o.Upstream(p)
	}
	if up == nil || res.User == nil {
		fail(w, proto, "Service unavailable, try again later", false)
		return
	}
	host, port, err := net.SplitHostPort(up.Address)
	if err == nil {
		host, err = resolve(r.Context(), host)
	}
	if err != nil {
		h.o.Logger.Error("auth_http: upstream address", "address", up.Address, "err", err)
		fail(w, proto, "Service unavailable, try again later", false)
		return
	}
	hd := w.Header()
	hd.Set("Auth-Status", "OK")
	hd.Set("Auth-Server", host)
	hd.Set("Auth-Port", port)
	if p == policy.IMAP {
		sep := up.Separator
		if sep == "" {
			sep = "*"
		}
		hd.Set("Auth-User", res.User.Name+sep+up.MasterUser)
		hd.Set("Auth-Pass", up.MasterPassword)
	}
	w.WriteHeader(http.StatusOK)
}

// fail answers a refusal; retry adds Auth-Wait so nginx lets the client try
// again on the same connection (wrong password), otherwise nginx closes it.
func fail(w http.ResponseWriter, proto, status string, retry bool) {
	hd := w.Header()
	hd.Set("Auth-Status", status)
	if retry {
		hd.Set("Auth-Wait", strconv.Itoa(1))
	}
	if proto == "smtp" {
		code := "535 5.7.8"
		if !retry {
			code = "454 4.7.0"
		}
		hd.Set("Auth-Error-Code", code)
	}
	w.WriteHeader(http.StatusOK)
}

// resolve gives nginx an IP address (it accepts nothing else in Auth-Server).
func resolve(ctx context.Context, host string) (string, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.String(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return "", &net.DNSError{Err: "no address", Name: host}
	}
	return addrs[0].Unmap().String(), nil
}
