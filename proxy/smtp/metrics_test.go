package smtp

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMetrics records what the front-end reports.
type fakeMetrics struct {
	mu       sync.Mutex
	bytes    map[string]int // by direction
	protos   map[string]bool
	connects int
	errors   int
}

var _ Metrics = (*fakeMetrics)(nil)

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{bytes: map[string]int{}, protos: map[string]bool{}}
}

func (m *fakeMetrics) RelayedBytes(proto, dir string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protos[proto] = true
	m.bytes[dir] += n
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

type metricsSnapshot struct {
	up, down, connects, errors int
	protos                     string
}

func (m *fakeMetrics) snapshot() metricsSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []string
	for p := range m.protos {
		ps = append(ps, p)
	}
	return metricsSnapshot{m.bytes["to_upstream"], m.bytes["to_client"], m.connects, m.errors, strings.Join(ps, ",")}
}

func TestMetricsRelay(t *testing.T) {
	fm := newFakeMetrics()
	e := newEnv(t, func(o *Options) { o.Metrics = fm })
	rc := e.dialAuthed("alice")
	if got := fm.snapshot(); got.connects != 1 || got.errors != 0 || got.up != 0 {
		t.Fatalf("after AUTH: got %+v, want one upstream connect, no error, no bytes", got)
	}
	bodies := []string{
		"Subject: one\r\n\r\nhello\r\n",
		"Subject: two\r\n\r\n.dot-stuffed line\r\n" + strings.Repeat("a line of text\r\n", 5000),
	}
	want := 0
	for _, body := range bodies {
		rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
		rc.cmd("RCPT TO:<x@example.net>", 250, "")
		rc.cmd("DATA", 354, "")
		stuffed := strings.ReplaceAll("\r\n"+body, "\r\n.", "\r\n..")[2:]
		rc.cmd(stuffed+".", 250, "queued")
		want += len(body)
	}
	rc.cmd("QUIT", 221, "")
	var upstreamGot int
	for _, m := range e.up.messages() {
		upstreamGot += int(m.Len)
	}
	got := fm.snapshot()
	if got.up != want || upstreamGot != want {
		t.Errorf("to_upstream: got %d bytes (upstream received %d), want %d (the message bodies)", got.up, upstreamGot, want)
	}
	if got.down != 0 {
		t.Errorf("to_client: got %d bytes, want 0 (not counted for SMTP)", got.down)
	}
	if got.connects != 1 || got.errors != 0 || got.protos != "smtp" {
		t.Errorf("got %d connects, %d errors, protocols %q; want 1, 0, smtp", got.connects, got.errors, got.protos)
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
		mutate func(*Options)
	}{
		{"upstream down", func(o *Options) { o.Upstream.Address = dead }},
		{"master login refused", func(o *Options) { o.Upstream.MasterPassword = "wrong" }},
		{"no upstream", func(o *Options) { o.Upstream = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fm := newFakeMetrics()
			e := newEnv(t, func(o *Options) {
				o.Metrics = fm
				tc.mutate(o)
			})
			e.dialAuthedExpect("alice", 454, "4.7.0")
			if got := fm.snapshot(); got.errors != 1 || got.connects != 0 || got.up != 0 || got.protos != "smtp" {
				t.Errorf("got %+v, want one smtp upstream error, no connect, no bytes", got)
			}
		})
	}
}
