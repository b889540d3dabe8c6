package metrics

import (
	"context"
	"errors"
	"github.com/legate-proxy/legate/internal/login"
	"io"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

// scrape returns the text exposition of m.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: got status %d, want 200", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// value returns the value of the series written exactly as series (name and
// labels in exposition order), or -1 when absent.
func value(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -2
			}
			return f
		}
	}
	return -1
}

func attempt(proto string, o policy.Outcome, r policy.Rule) (login.Request, login.Result) {
	return login.Request{User: "alice@example.com", Secret: "ABCD-EFGH-JKLM-NPQR", IP: netip.MustParseAddr("192.0.2.7"), Protocol: proto},
		login.Result{Decision: policy.Decision{Outcome: o, Rule: r}}
}

func TestObserve(t *testing.T) {
	m := New(Options{})
	for _, c := range []struct {
		proto string
		o     policy.Outcome
		r     policy.Rule
	}{
		{"imap", policy.Allow, policy.RuleAllowAppPassword},
		{"imap", policy.Allow, policy.RuleAllowAppPassword},
		{"smtp", policy.BadCredentials, policy.RuleBadCredentials},
		{"ldap", policy.Throttled, policy.RuleThrottled},
		{"gopher", policy.Refused, "made_up_rule"},
	} {
		req, res := attempt(c.proto, c.o, c.r)
		m.Observe(req, res, 3*time.Millisecond)
	}
	text := scrape(t, m)
	for _, c := range []struct {
		series string
		want   float64
	}{
		{`legate_logins_total{outcome="allow",protocol="imap",rule="app_password"}`, 2},
		{`legate_logins_total{outcome="bad_credentials",protocol="smtp",rule="bad_credentials"}`, 1},
		{`legate_logins_total{outcome="throttled",protocol="ldap",rule="throttled"}`, 1},
		{`legate_logins_total{outcome="refused",protocol="other",rule="other"}`, 1},
		{`legate_throttled_total{protocol="ldap"}`, 1},
		{`legate_throttled_total{protocol="imap"}`, 0},
		{`legate_login_decision_seconds_count{protocol="imap"}`, 2},
		{`legate_login_decision_seconds_bucket{protocol="imap",le="0.0025"}`, 0},
		{`legate_login_decision_seconds_bucket{protocol="imap",le="0.005"}`, 2},
	} {
		if got := value(text, c.series); got != c.want {
			t.Errorf("%s: got %v, want %v", c.series, got, c.want)
		}
	}
	for _, secret := range []string{"alice", "192.0.2.7", "ABCD-EFGH"} {
		if strings.Contains(text, secret) {
			t.Errorf("metrics carry %q, a user, IP or secret", secret)
		}
	}
}

func TestRelayUpstreamReload(t *testing.T) {
	m := New(Options{})
	m.RelayedBytes("imap", ToUpstream, 100)
	m.RelayedBytes("imap", ToUpstream, 20)
	m.RelayedBytes("imap", ToClient, 7)
	m.RelayedBytes("smtp", "sideways", 5)
	m.RelayedBytes("smtp", ToClient, 0)
	m.UpstreamError("smtp")
	m.UpstreamConnect("ldap", 30*time.Millisecond)
	m.ConfigReload(nil)
	m.ConfigReload(errors.New("bad"))
	m.ConfigReload(errors.New("worse"))
	text := scrape(t, m)
	for _, c := range []struct {
		series string
		want   float64
	}{
		{`legate_relayed_bytes_total{direction="to_upstream",protocol="imap"}`, 120},
		{`legate_relayed_bytes_total{direction="to_client",protocol="imap"}`, 7},
		{`legate_relayed_bytes_total{direction="other",protocol="smtp"}`, 5},
		{`legate_relayed_bytes_total{direction="to_client",protocol="smtp"}`, -1},
		{`legate_upstream_errors_total{protocol="smtp"}`, 1},
		{`legate_upstream_errors_total{protocol="imap"}`, 0},
		{`legate_upstream_connect_seconds_count{protocol="ldap"}`, 1},
		{`legate_upstream_connect_seconds_bucket{protocol="ldap",le="0.025"}`, 0},
		{`legate_upstream_connect_seconds_bucket{protocol="ldap",le="0.05"}`, 1},
		{`legate_config_reloads_total{result="ok"}`, 1},
		{`legate_config_reloads_total{result="error"}`, 2},
	} {
		if got := value(text, c.series); got != c.want {
			t.Errorf("%s: got %v, want %v", c.series, got, c.want)
		}
	}
	if !strings.Contains(text, "legate_build_info{") || !strings.Contains(text, "go_goroutines") {
		t.Errorf("build info or Go collector missing:\n%s", text)
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	req, res := attempt("imap", policy.Allow, policy.RuleAllowAppPassword)
	m.Observe(req, res, time.Millisecond)
	m.RelayedBytes("imap", ToClient, 1)
	m.UpstreamError("imap")
	m.UpstreamConnect("imap", time.Second)
	m.StoreOp("verify", time.Millisecond)
	m.ConfigReload(nil)
	var s store.Store = &fakeStore{}
	if got := InstrumentStore(s, m); got != s {
		t.Errorf("InstrumentStore with nil metrics: got %T, want the store itself", got)
	}
}

func TestSessionsGauge(t *testing.T) {
	counts := map[string]int{"imap": 3, "smtp": 1}
	var mu sync.Mutex
	m := New(Options{Sessions: func(p string) int { mu.Lock(); defer mu.Unlock(); return counts[p] }})
	text := scrape(t, m)
	for series, want := range map[string]float64{
		`legate_sessions{protocol="imap"}`: 3, `legate_sessions{protocol="smtp"}`: 1, `legate_sessions{protocol="ldap"}`: 0,
	} {
		if got := value(text, series); got != want {
			t.Errorf("%s: got %v, want %v", series, got, want)
		}
	}
	mu.Lock()
	counts["imap"] = 0
	mu.Unlock()
	if got := value(scrape(t, m), `legate_sessions{protocol="imap"}`); got != 0 {
		t.Errorf("after the sessions ended: got %v, want 0", got)
	}
}

func TestAppPasswordsCached(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	calls, n := 0, 5
	var fail error
	m := New(Options{
		Now: func() time.Time { return now },
		AppPasswords: func(context.Context) (int, error) {
			calls++
			return n, fail
		},
	})
	const series = "legate_app_passwords"
	steps := []struct {
		advance   time.Duration
		n         int
		fail      error
		want      float64
		wantCalls int
	}{
		{0, 5, nil, 5, 1},
		{10 * time.Second, 9, nil, 5, 1},                        // cached
		{25 * time.Second, 9, nil, 9, 2},                        // 35s later: counted again
		{31 * time.Second, 2, errors.New("store closed"), 9, 3}, // error keeps the last value
		{time.Second, 2, nil, 2, 4},                             // and asks again next time
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		n, fail = s.n, s.fail
		if got := value(scrape(t, m), series); got != s.want || calls != s.wantCalls {
			t.Errorf("step %d: got %v after %d calls, want %v after %d", i, got, calls, s.want, s.wantCalls)
		}
	}
}

func TestNoAppPasswordsGaugeWithoutFunc(t *testing.T) {
	if strings.Contains(scrape(t, New(Options{})), "legate_app_passwords") {
		t.Error("legate_app_passwords exported without Options.AppPasswords")
	}
}

type fakeStore struct {
	store.Store
	users map[string]int
}

func (f *fakeStore) Users(context.Context) ([]string, error) {
	var u []string
	for k := range f.users {
		u = append(u, k)
	}
	return u, nil
}

func (f *fakeStore) List(_ context.Context, user string) ([]store.AppPassword, error) {
	time.Sleep(time.Millisecond)
	return make([]store.AppPassword, f.users[user]), nil
}

func (f *fakeStore) Verify(context.Context, string, string) (store.AppPassword, error) {
	return store.AppPassword{}, store.ErrNotFound
}

func TestInstrumentStore(t *testing.T) {
	m := New(Options{})
	fs := &fakeStore{users: map[string]int{"alice": 2, "bob": 3}}
	s := InstrumentStore(fs, m)
	n, err := CountAppPasswords(s)(context.Background())
	if err != nil || n != 5 {
		t.Fatalf("CountAppPasswords: got %d, %v; want 5, nil", n, err)
	}
	if _, err := s.Verify(context.Background(), "alice", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Verify through the wrapper: got %v, want ErrNotFound", err)
	}
	m.StoreOp("drop_tables", time.Millisecond)
	text := scrape(t, m)
	for series, want := range map[string]float64{
		`legate_store_op_seconds_count{op="users"}`:             1,
		`legate_store_op_seconds_count{op="list"}`:              2,
		`legate_store_op_seconds_count{op="verify"}`:            1,
		`legate_store_op_seconds_count{op="other"}`:             1,
		`legate_store_op_seconds_bucket{op="list",le="0.0004"}`: 0, // each List sleeps 1ms
	} {
		if got := value(text, series); got != want {
			t.Errorf("%s: got %v, want %v", series, got, want)
		}
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	a, b := New(Options{}), New(Options{})
	a.UpstreamError("imap")
	if got := value(scrape(t, b), `legate_upstream_errors_total{protocol="imap"}`); got != 0 {
		t.Errorf("second Metrics sees the first one's count: got %v, want 0", got)
	}
}
