package smtp

import (
	"github.com/legate-proxy/legate/internal/login/logintest"
	"net"
	"strings"
	"testing"
)

var _ Metrics = (*logintest.Metrics)(nil)

func TestMetricsRelay(t *testing.T) {
	fm := logintest.NewMetrics()
	e := newEnv(t, func(o *Options) { o.Metrics = fm })
	rc := e.dialAuthed("alice")
	if got := fm.Snapshot(); got.Connects != 1 || got.Errors != 0 || got.Up != 0 {
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
	got := fm.Snapshot()
	if got.Up != want || upstreamGot != want {
		t.Errorf("to_upstream: got %d bytes (upstream received %d), want %d (the message bodies)", got.Up, upstreamGot, want)
	}
	if got.Down != 0 {
		t.Errorf("to_client: got %d bytes, want 0 (not counted for SMTP)", got.Down)
	}
	if got.Connects != 1 || got.Errors != 0 || got.Protos != "smtp" {
		t.Errorf("got %d connects, %d errors, protocols %q; want 1, 0, smtp", got.Connects, got.Errors, got.Protos)
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
			fm := logintest.NewMetrics()
			e := newEnv(t, func(o *Options) {
				o.Metrics = fm
				tc.mutate(o)
			})
			e.dialAuthedExpect("alice", 454, "4.7.0")
			if got := fm.Snapshot(); got.Errors != 1 || got.Connects != 0 || got.Up != 0 || got.Protos != "smtp" {
				t.Errorf("got %+v, want one smtp upstream error, no connect, no bytes", got)
			}
		})
	}
}
