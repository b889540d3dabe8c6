// Package logintest holds the test doubles every front-end's tests share:
// a fake login service, a recorder of the front-ends' metrics and a log
// buffer safe for concurrent writes. It is imported by tests only.
package logintest

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/policy"
)

// LogBuffer is a bytes.Buffer safe for concurrent writes: the sink of a
// test's slog handler while connections log from their own goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Alice is the user Auth's allowed logins prove.
var Alice = login.User{Name: "alice", DN: "uid=alice,ou=people,dc=example,dc=com", Addresses: []string{"alice@example.com"}}

// Auth is a fake login service (login.Authenticator) that records every
// request. Its zero value answers by the secret (BySecret) and accepts
// credentials over TLS only.
type Auth struct {
	// Decide answers a request; nil means BySecret.
	Decide func(login.Request) login.Result
	// PlainOK accepts credentials without TLS too.
	PlainOK bool

	mu       sync.Mutex
	requests []login.Request
}

var _ login.Authenticator = (*Auth)(nil)

// Login records req and answers it.
func (a *Auth) Login(_ context.Context, req login.Request) login.Result {
	a.mu.Lock()
	a.requests = append(a.requests, req)
	a.mu.Unlock()
	if a.Decide != nil {
		return a.Decide(req)
	}
	return BySecret(req)
}

// CredentialsAccepted accepts credentials over TLS, and without TLS when
// PlainOK is set.
func (a *Auth) CredentialsAccepted(tls bool, _ netip.Addr) bool { return tls || a.PlainOK }

// Requests are the requests Login was asked, oldest first.
func (a *Auth) Requests() []login.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// outcomes are the secrets BySecret understands.
var outcomes = map[string]policy.Outcome{"allow": policy.Allow, "bad": policy.BadCredentials,
	"refused": policy.Refused, "expired": policy.Expired, "throttled": policy.Throttled,
	"down": policy.Unavailable, "tls": policy.TLSRequired}

// BySecret answers with the outcome the secret names ("allow", "bad",
// "refused", "expired", "throttled", "down", "tls"; anything else is a
// zero outcome) and the reason "because <secret>". An allowed login proves
// Alice with the app password "ap1".
func BySecret(req login.Request) login.Result {
	res := login.Result{Decision: policy.Decision{Outcome: outcomes[req.Secret], Reason: "because " + req.Secret}}
	if res.Outcome == policy.Allow {
		u := Alice
		res.User = &u
		res.AppPassword = &login.AppPassword{ID: "ap1"}
	}
	return res
}

// Allow is an allowed result proving user, with no app password.
func Allow(user string, rule policy.Rule) login.Result {
	return login.Result{Decision: policy.Decision{Outcome: policy.Allow, Rule: rule}, User: &login.User{Name: user}}
}

// Deny is a bad-credentials result.
func Deny(rule policy.Rule) login.Result {
	return login.Result{Decision: policy.Decision{Outcome: policy.BadCredentials, Rule: rule}}
}

// Metrics records what a front-end reports through its Metrics option.
type Metrics struct {
	mu       sync.Mutex
	bytes    map[string]int // by direction
	chunks   int
	protos   map[string]bool
	connects int
	errors   int
}

// NewMetrics returns an empty recorder.
func NewMetrics() *Metrics {
	return &Metrics{bytes: map[string]int{}, protos: map[string]bool{}}
}

func (m *Metrics) RelayedBytes(proto, dir string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protos[proto] = true
	m.bytes[dir] += n
	m.chunks++
}

func (m *Metrics) UpstreamError(proto string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protos[proto] = true
	m.errors++
}

// UpstreamConnect counts connects that report a positive duration.
func (m *Metrics) UpstreamConnect(proto string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protos[proto] = true
	if d > 0 {
		m.connects++
	}
}

// MetricsSnapshot is what a Metrics recorded so far.
type MetricsSnapshot struct {
	// Up and Down are the bytes relayed to the upstream and to the client.
	Up, Down int
	// Chunks is the number of RelayedBytes calls.
	Chunks           int
	Connects, Errors int
	// Protos are the protocols reported, sorted, comma-separated.
	Protos string
}

// Snapshot returns what was recorded so far.
func (m *Metrics) Snapshot() MetricsSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []string
	for p := range m.protos {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return MetricsSnapshot{Up: m.bytes["to_upstream"], Down: m.bytes["to_client"], Chunks: m.chunks,
		Connects: m.connects, Errors: m.errors, Protos: strings.Join(ps, ",")}
}

// WaitSnapshot polls for up to 2 s until cond holds (front-ends report
// just after the bytes are written) and returns the last snapshot.
func (m *Metrics) WaitSnapshot(cond func(MetricsSnapshot) bool) MetricsSnapshot {
	deadline := time.Now().Add(2 * time.Second)
	for {
		s := m.Snapshot()
		if cond(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}
