package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/testenv"
)

// benchSMTP measures issue 5: messages per second over persistent
// authenticated sessions, and the time and Legate memory for one 50 MB
// message (options.BigMessage), direct to Dovecot's submission service and through Legate.
func benchSMTP(ctx context.Context, t testing.TB, o options) *section {
	certs := testenv.NewCerts(t)
	sink := testenv.StartSink(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Certs: certs, Submission: true, RelayAddr: sink.Addr,
		MaxUserIPConnections: 10*o.Sessions + 100})
	dir := testenv.TempDir(t)

	cfg := benchConfig(dir, certs.CertFile, certs.KeyFile)
	cfg.Listen.Submission = "127.0.0.1:0"
	cfg.Upstream.SMTP = config.UpstreamMail{Address: dc.SubmissionAddr, TLS: config.TLSNone,
		MasterUser: dc.MasterUser, MasterPasswordFile: writeSecret(t, dir, "master.secret", dc.MasterPassword),
		Login: config.LoginAuthzid, Separator: "*"}
	cfg.Directory.Static.Users = []config.User{{Name: "alice", Addresses: []string{"alice@example.com"}}}
	cfg.Limits.MaxMessageSize = 64 << 20
	app := appPassword(ctx, t, cfg, "alice")
	lg := startLegate(t, dir, cfg)

	type endpoint struct{ name, addr, password string }
	targets := []endpoint{
		{"direct Dovecot", dc.SubmissionAddr, dc.Users["alice"]},
		{"Legate", lg.Addrs["submission"], app},
	}
	sec := newSection("SMTP submission (issue 5)")
	tab := sec.add("measurement", "direct Dovecot", "Legate", "Legate / direct", "target", "result")

	small := []byte(message(10 << 10))
	var opens []opener
	for _, tg := range targets {
		opens = append(opens, named(tg.name, func(int) (session, error) {
			c, err := loginSMTP(tg.addr, "alice", tg.password)
			if err != nil {
				return session{}, err
			}
			op := func() error { return sendSMTP(c, small) }
			return session{op: op, close: func() { c.Quit() }}, nil
		}))
	}
	msgs, err := compare(ctx, o.Sessions, o.Duration, opens...)
	if err != nil {
		t.Fatalf("smtp: %v\nDovecot log:\n%s\nLegate log:\n%s", err, lastLines(dc.Log(), 15), lg.logTail())
	}
	for i, tg := range targets {
		sec.record("messages "+tg.name, msgs[i])
	}
	ratio, target, res := atLeast(msgs[1], msgs[0], 0.85) // issue #14
	tab.row(fmt.Sprintf("10 KiB messages, %d authenticated sessions (messages/s)", o.Sessions),
		rate(msgs[0]), rate(msgs[1]), ratio, target, res)

	big := []byte(message(o.BigMessage))
	var took [2]time.Duration
	var growth int64
	for i, tg := range targets {
		c, err := loginSMTP(tg.addr, "alice", tg.password)
		if err != nil {
			t.Fatalf("smtp via %s: %v", tg.name, err)
		}
		var watch *rssWatch
		if tg.name == "Legate" {
			if watch, err = watchRSS(lg); err != nil {
				c.Close()
				t.Fatalf("%v", err)
			}
		}
		start := time.Now()
		err = sendSMTP(c, big)
		took[i] = time.Since(start)
		if watch != nil {
			growth = watch.stop()
		}
		c.Quit()
		if err != nil {
			t.Fatalf("smtp big message via %s: %v\nDovecot log:\n%s\nLegate log:\n%s", tg.name, err, lastLines(dc.Log(), 15), lg.logTail())
		}
		sec.record("big "+tg.name, took[i].Seconds())
	}
	sec.record("big rss", float64(growth))
	tab.row(fmt.Sprintf("one %s message (seconds)", megabytes(o.BigMessage)), fmt.Sprintf("%.2f", took[0].Seconds()), fmt.Sprintf("%.2f", took[1].Seconds()),
		fmt.Sprintf("%.2f", took[1].Seconds()/took[0].Seconds()), "—", "—")
	tab.row(fmt.Sprintf("Legate RSS growth during the %s message", megabytes(o.BigMessage)), "—", bytesize(float64(growth)), "—", "≤ 8 MiB", verdict(growth <= 8<<20))
	sec.Notes = append(sec.Notes,
		"Messages/s measured in three rounds that take turns (direct, Legate). Legate runs as a child process of the bench.",
		"Both paths end at Dovecot's submission service (plaintext port), which relays to smtp-sink; smtp-sink writes every message to a file.",
		"Direct sessions authenticate as alice with her Dovecot password (AUTH PLAIN); Legate sessions with an app password, and Legate authenticates upstream with the master user (authzid). Each message: MAIL FROM alice@example.com, RCPT TO bob@example.com, DATA.",
		"RSS growth: peak VmRSS (VmHWM after resetting it through /proc/<pid>/clear_refs, or sampled every 5 ms where that is not possible) minus VmRSS before the message, after a forced GC.",
	)
	return sec
}

// loginSMTP connects, says EHLO and authenticates with SASL PLAIN.
func loginSMTP(addr, user, password string) (*smtp.Client, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	c.CommandTimeout, c.SubmissionTimeout = time.Minute, 5*time.Minute
	if err := c.Hello("bench.example.com"); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		c.Close()
		return nil, fmt.Errorf("smtp: auth: %w", err)
	}
	return c, nil
}

func sendSMTP(c *smtp.Client, msg []byte) error {
	return c.SendMail("alice@example.com", []string{"bob@example.com"}, bytes.NewReader(msg))
}

// rssWatch measures how far Legate's RSS rises above its level after a
// forced GC.
type rssWatch struct {
	lg       *childProc
	base     int64
	peakOK   bool // VmHWM was reset and can be read
	sampled  atomic.Int64
	stopping chan struct{}
	wg       sync.WaitGroup
}

func watchRSS(lg *childProc) (*rssWatch, error) {
	s, err := lg.Stats()
	if err != nil {
		return nil, err
	}
	w := &rssWatch{lg: lg, base: s.RSS, stopping: make(chan struct{})}
	w.peakOK = lg.ResetPeak() == nil
	w.sampled.Store(s.RSS)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stopping:
				return
			case <-tick.C:
				if r, err := lg.RSS(); err == nil && r > w.sampled.Load() {
					w.sampled.Store(r)
				}
			}
		}
	}()
	return w, nil
}

// stop returns the growth: peak RSS minus the base.
func (w *rssWatch) stop() int64 {
	close(w.stopping)
	w.wg.Wait()
	peak := w.sampled.Load()
	if w.peakOK {
		if p, err := w.lg.Peak(); err == nil && p > peak {
			peak = p
		}
	}
	return peak - w.base
}

// megabytes formats a size in MB (10^6 bytes).
func megabytes(n int) string { return fmt.Sprintf("%g MB", float64(n)/1e6) }
