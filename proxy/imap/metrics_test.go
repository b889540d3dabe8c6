package imap

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/legate-proxy/legate/internal/frontend"
)

// fakeMetrics records what the front-end reports.
type fakeMetrics struct {
	mu       sync.Mutex
	bytes    map[string]int // by direction
	chunks   int
	protos   map[string]bool
	connects int
	errors   int
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{bytes: map[string]int{}, protos: map[string]bool{}}
}

func (m *fakeMetrics) RelayedBytes(proto, dir string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protos[proto] = true
	m.bytes[dir] += n
	m.chunks++
}

func (m *fakeMetrics) UpstreamError(proto string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protos[proto] = true
	m.errors++
}

func (m *fakeMetrics) UpstreamConnect(proto string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protos[proto] = true
	if d > 0 {
		m.connects++
	}
}

func (m *fakeMetrics) snapshot() (up, down, connects, errors int, protos []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.protos {
		protos = append(protos, p)
	}
	return m.bytes[frontend.DirToUpstream], m.bytes[frontend.DirToClient], m.connects, m.errors, protos
}

var _ Metrics = (*fakeMetrics)(nil)

func TestMetricsRelayedBytesExact(t *testing.T) {
	fm := newFakeMetrics()
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.Metrics = fm }})
	c := e.dial()
	c.expect("* OK")
	// The LOGIN and its answer are Legate's own; "b NOOP", pipelined after
	// it, is the first relayed byte.
	c.send("a LOGIN alice " + e.secret["alice"] + "\r\nb NOOP\r\n")
	c.expect("a OK [CAPABILITY")
	sent := "b NOOP\r\n"
	// A literal bigger than the small relay buffer takes the big one.
	lit := strings.Repeat("x", 100<<10)
	for _, cmd := range []string{
		"c SELECT INBOX\r\n",
		"d APPEND INBOX {" + strconv.Itoa(len(lit)) + "+}\r\n" + lit + "\r\n",
		"e LOGOUT\r\n",
	} {
		c.send(cmd)
		sent += cmd
	}
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatalf("read to the end of the session: %v", err)
	}
	if !strings.HasSuffix(string(got), "e OK LOGOUT done\r\n") {
		t.Fatalf("session output: got %q, want it to end with the LOGOUT answer", got)
	}
	if !waitFor(2*time.Second, func() bool { return e.reg.Count("") == 0 }) {
		t.Fatalf("session still registered after logout")
	}
	up, down, connects, errs, protos := fm.snapshot()
	if up != len(sent) {
		t.Errorf("to_upstream: got %d bytes, want %d (what the client sent after login)", up, len(sent))
	}
	if down != len(got) {
		t.Errorf("to_client: got %d bytes, want %d (what the client received after login)", down, len(got))
	}
	if connects != 1 || errs != 0 {
		t.Errorf("upstream connects/errors: got %d/%d, want 1/0", connects, errs)
	}
	if len(protos) != 1 || protos[0] != "imap" {
		t.Errorf("protocols reported: got %v, want [imap]", protos)
	}
	fm.mu.Lock()
	chunks := fm.chunks
	fm.mu.Unlock()
	if chunks*100 > up+down {
		t.Errorf("RelayedBytes calls: got %d for %d bytes, want one per chunk, not per byte", chunks, up+down)
	}
}

func TestMetricsUpstreamConnectPerLogin(t *testing.T) {
	fm := newFakeMetrics()
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.Metrics = fm }})
	for i := range 3 {
		c := e.dial()
		e.login(c)
		c.send("z LOGOUT\r\n")
		c.expect("* BYE")
		c.expect("z OK")
		if _, _, connects, _, _ := fm.snapshot(); connects != i+1 {
			t.Errorf("after login %d: got %d upstream connects, want %d", i+1, connects, i+1)
		}
	}
	// A refused login does not reach the upstream.
	c := e.dial()
	c.expect("* OK")
	c.send("a LOGIN alice wrong-secret\r\n")
	c.expect("a NO [AUTHENTICATIONFAILED]")
	if _, _, connects, errs, _ := fm.snapshot(); connects != 3 || errs != 0 {
		t.Errorf("after a bad password: got %d connects, %d errors, want 3, 0", connects, errs)
	}
}

func TestMetricsUpstreamError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name   string
		fake   fakeConfig
		mutate func(*Options)
	}{
		{"upstream down", fakeConfig{}, func(o *Options) { o.Upstream.Address = dead }},
		{"master login refused", fakeConfig{refuse: true}, nil},
		{"no upstream", fakeConfig{}, func(o *Options) { o.Upstream = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fm := newFakeMetrics()
			e := newEnv(t, envOptions{fake: tc.fake, mutate: func(o *Options) {
				o.Metrics = fm
				if tc.mutate != nil {
					tc.mutate(o)
				}
			}})
			c := e.dial()
			c.expect("* OK")
			c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
			c.expect("a " + ansUpstreamDown)
			up, down, connects, errs, protos := fm.snapshot()
			if errs != 1 || connects != 0 || up != 0 || down != 0 {
				t.Errorf("got errors %d, connects %d, bytes %d/%d; want 1, 0, 0/0", errs, connects, up, down)
			}
			if len(protos) != 1 || protos[0] != "imap" {
				t.Errorf("protocols reported: got %v, want [imap]", protos)
			}
		})
	}
}

// promMetrics reports like internal/metrics does: a labelled Prometheus
// counter looked up and added to per call.
type promMetrics struct{ relayed *prometheus.CounterVec }

func (m promMetrics) RelayedBytes(proto, dir string, n int) {
	m.relayed.WithLabelValues(proto, dir).Add(float64(n))
}
func (promMetrics) UpstreamError(string)                  {}
func (promMetrics) UpstreamConnect(string, time.Duration) {}

// BenchmarkRelayAppend measures relay throughput (1 MiB APPEND literals)
// with and without metrics.
func BenchmarkRelayAppend(b *testing.B) {
	for _, bc := range []struct {
		name string
		m    Metrics
	}{
		{"none", nil},
		{"prometheus", promMetrics{prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayed"}, []string{"protocol", "direction"})}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, envOptions{mutate: func(o *Options) {
				o.Metrics = bc.m
				o.Logger = slog.New(slog.DiscardHandler)
			}})
			c := e.dial()
			e.login(c)
			lit := strings.Repeat("x", 1<<20)
			cmd := "b APPEND INBOX {" + strconv.Itoa(len(lit)) + "+}\r\n" + lit + "\r\n"
			b.SetBytes(int64(len(cmd)))
			b.ResetTimer()
			for b.Loop() {
				c.send(cmd)
				c.expect("b OK APPEND done")
			}
		})
	}
}

// BenchmarkRelayCount is the cost the relay pays per chunk for metrics.
func BenchmarkRelayCount(b *testing.B) {
	m := promMetrics{prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayed"}, []string{"protocol", "direction"})}
	r := &relay{c: &conn{opts: &Options{Metrics: m}}}
	for b.Loop() {
		r.count(true, bigBuf)
	}
}
