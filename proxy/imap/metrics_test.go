package imap

import (
	"github.com/legate-proxy/legate/internal/login/logintest"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var _ Metrics = (*logintest.Metrics)(nil)

func TestMetricsRelayedBytesExact(t *testing.T) {
	fm := logintest.NewMetrics()
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
	snap := fm.Snapshot()
	up, down, connects, errs, protos := snap.Up, snap.Down, snap.Connects, snap.Errors, snap.Protos
	if up != len(sent) {
		t.Errorf("to_upstream: got %d bytes, want %d (what the client sent after login)", up, len(sent))
	}
	if down != len(got) {
		t.Errorf("to_client: got %d bytes, want %d (what the client received after login)", down, len(got))
	}
	if connects != 1 || errs != 0 {
		t.Errorf("upstream connects/errors: got %d/%d, want 1/0", connects, errs)
	}
	if protos != "imap" {
		t.Errorf("protocols reported: got %q, want imap", protos)
	}
	if chunks := snap.Chunks; chunks*100 > up+down {
		t.Errorf("RelayedBytes calls: got %d for %d bytes, want one per chunk, not per byte", chunks, up+down)
	}
}

func TestMetricsUpstreamConnectPerLogin(t *testing.T) {
	fm := logintest.NewMetrics()
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.Metrics = fm }})
	for i := range 3 {
		c := e.dial()
		e.login(c)
		c.send("z LOGOUT\r\n")
		c.expect("* BYE")
		c.expect("z OK")
		if connects := fm.Snapshot().Connects; connects != i+1 {
			t.Errorf("after login %d: got %d upstream connects, want %d", i+1, connects, i+1)
		}
	}
	// A refused login does not reach the upstream.
	c := e.dial()
	c.expect("* OK")
	c.send("a LOGIN alice wrong-secret\r\n")
	c.expect("a NO [AUTHENTICATIONFAILED]")
	if got := fm.Snapshot(); got.Connects != 3 || got.Errors != 0 {
		t.Errorf("after a bad password: got %d connects, %d errors, want 3, 0", got.Connects, got.Errors)
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
			fm := logintest.NewMetrics()
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
			snap := fm.Snapshot()
			up, down, connects, errs, protos := snap.Up, snap.Down, snap.Connects, snap.Errors, snap.Protos
			if errs != 1 || connects != 0 || up != 0 || down != 0 {
				t.Errorf("got errors %d, connects %d, bytes %d/%d; want 1, 0, 0/0", errs, connects, up, down)
			}
			if protos != "imap" {
				t.Errorf("protocols reported: got %q, want imap", protos)
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
