package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/testenv"
)

// maxIdle is the most idle sessions Dovecot accepts as the harness
// configures it (service imap { process_limit = 1024 }), with room for a
// few other sessions.
const maxIdle = 1000

// imapTarget is one way to reach Dovecot's IMAP: directly, through the
// bare relay or through Legate, with the credentials that work there.
type imapTarget struct {
	name           string
	plain, tls     string // addresses
	user, password string
}

// benchIMAP measures issue 4: FETCH throughput over persistent sessions,
// full logins per second (plain and TLS), and the memory and descriptors
// an idle logged-in session costs Legate.
func benchIMAP(ctx context.Context, t testing.TB, o options) *section {
	if o.Idle > maxIdle {
		t.Fatalf("-idle %d: at most %d; Dovecot 2.3 runs one imap process per session and internal/testenv "+
			"leaves service imap { process_limit } at its default of 1024", o.Idle, maxIdle)
	}
	certs := testenv.NewCerts(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Certs: certs,
		MaxUserIPConnections: 10*o.Idle + 10*o.Sessions + 100})
	dc.Deliver("alice", message(10<<10))
	dir := testenv.TempDir(t)

	cfg := benchConfig(dir, certs.CertFile, certs.KeyFile)
	cfg.Listen.IMAP, cfg.Listen.IMAPS = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Upstream.IMAP = config.UpstreamMail{Address: dc.IMAPAddr, TLS: config.TLSNone,
		MasterUser: dc.MasterUser, MasterPasswordFile: writeSecret(t, dir, "master.secret", dc.MasterPassword),
		Login: config.LoginAuthzid, Separator: "*"}
	cfg.Directory.Static.Users = []config.User{{Name: "alice", Addresses: []string{"alice@example.com"}}}
	app := appPassword(ctx, t, cfg, "alice")
	lg := startLegate(t, dir, cfg)

	relays := startRelays(t, dir, dc.IMAPAddr, dc.IMAPSAddr)
	targets := []imapTarget{
		{"direct Dovecot", dc.IMAPAddr, dc.IMAPSAddr, "alice", dc.Users["alice"]},
		{"bare relay", relays.Addrs[dc.IMAPAddr], relays.Addrs[dc.IMAPSAddr], "alice", dc.Users["alice"]},
		{"Legate", lg.Addrs["imap"], lg.Addrs["imaps"], "alice", app},
	}
	clientTLS := certs.ClientTLS.Clone()

	sec := newSection("IMAP (issue 4)")
	tab := sec.add("measurement", "direct Dovecot", "bare relay", "Legate", "Legate / relay", "target", "result")

	// FETCH over persistent sessions.
	var opens []opener
	for _, tg := range targets {
		opens = append(opens, named(tg.name, func(int) (session, error) {
			c, err := loginIMAP(ctx, tg.plain, nil, tg.user, tg.password)
			if err != nil {
				return session{}, err
			}
			if _, err := c.cmd("SELECT INBOX"); err != nil {
				c.Close()
				return session{}, err
			}
			op := func() error {
				n, err := c.cmd("FETCH 1 BODY[]")
				if err == nil && n < 9<<10 {
					err = fmt.Errorf("imap: FETCH returned %d literal bytes, want the 10 KiB message", n)
				}
				return err
			}
			return session{op: op, close: func() { c.logout() }}, nil
		}))
	}
	fetch, err := compare(ctx, o.Sessions, o.Duration, opens...)
	if err != nil {
		t.Fatalf("imap fetch: %v", err)
	}
	for i, tg := range targets {
		sec.record("fetch "+tg.name, fetch[i])
	}
	ratio, target, res := atLeast(fetch[2], fetch[1], 0.95)
	tab.row(fmt.Sprintf("FETCH BODY[] of 10 KiB, %d sessions (commands/s)", o.Sessions),
		rate(fetch[0]), rate(fetch[1]), rate(fetch[2]), ratio, target, res)

	// Full logins: connect, LOGIN, LOGOUT.
	for _, useTLS := range []bool{false, true} {
		kind := "plain"
		if useTLS {
			kind = "TLS"
		}
		var opens []opener
		for _, tg := range targets {
			addr, tc := tg.plain, (*tls.Config)(nil)
			if useTLS {
				addr, tc = tg.tls, clientTLS
			}
			opens = append(opens, named(tg.name, func(int) (session, error) {
				op := func() error {
					c, err := loginIMAP(ctx, addr, tc, tg.user, tg.password)
					if err != nil {
						return err
					}
					return c.logout()
				}
				return session{op: op, close: noClose}, nil
			}))
		}
		logins, err := compare(ctx, o.Sessions, o.Duration, opens...)
		if err != nil {
			t.Fatalf("imap %s logins: %v", kind, err)
		}
		for i, tg := range targets {
			sec.record("logins "+kind+" "+tg.name, logins[i])
		}
		ratio, target, res := atLeast(logins[2], logins[1], 0.9)
		tab.row(fmt.Sprintf("logins %s: connect, LOGIN, LOGOUT; %d in parallel (logins/s)", kind, o.Sessions),
			rate(logins[0]), rate(logins[1]), rate(logins[2]), ratio, target, res)
	}
	relays.stop()

	idleTab := sec.add("idle logged-in sessions in Legate", "RSS growth per 1,000", "RSS per session",
		"Go heap+stacks per session", "goroutines per session", "fds per session", "target", "result")
	for _, useTLS := range []bool{false, true} {
		idleIMAP(ctx, t, o, sec, idleTab, dc, lg, app, useTLS, clientTLS)
	}
	sec.Notes = append(sec.Notes,
		"The bare relay (io.Copy both ways, nothing else) and Legate each run as a child process of the bench, so neither shares a Go runtime with the load generator. Throughput columns are measured in three rounds that take turns.",
		"Direct and relay sessions log in as alice with her Dovecot password; Legate sessions with an app password, and Legate logs in upstream with the master user (SASL PLAIN, authzid).",
		"Legate's upstream leg is plaintext loopback to Dovecot's IMAP port in every row; TLS rows are TLS between client and Legate (for direct and relay: end to end to Dovecot's imaps port). Each TLS login is a full handshake (no session resumption).",
		fmt.Sprintf("Idle sessions: %d logged-in sessions held open (opened 8 at a time); RSS (VmRSS of the Legate child process) and fds (/proc/<pid>/fd) are read before and after, each time after a forced GC and debug.FreeOSMemory in Legate.", o.Idle),
	)
	return sec
}

// idleIMAP opens o.Idle idle sessions through Legate and adds a row.
func idleIMAP(ctx context.Context, t testing.TB, o options, sec *section, tab *table, dc *testenv.Dovecot, lg *childProc, app string, useTLS bool, clientTLS *tls.Config) {
	kind, addr, tc, limit := "plain", lg.Addrs["imap"], (*tls.Config)(nil), 16.0*1024
	if useTLS {
		kind, addr, tc, limit = "TLS", lg.Addrs["imaps"], clientTLS, 64.0*1024
	}
	// Sessions of earlier measurements may still hold Dovecot imap
	// processes, which count against its process limit.
	waitIMAPProcs(dc, 0, 30*time.Second)
	before, err := lg.Stats()
	if err != nil {
		t.Fatalf("%v", err)
	}
	conns, err := openIdle(ctx, o.Idle, func() (*imapConn, error) { return loginIMAP(ctx, addr, tc, "alice", app) })
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		t.Fatalf("imap idle %s sessions: %d of %d opened, Dovecot has %d imap processes: %v\nDovecot log:\n%s\nLegate log:\n%s",
			kind, len(conns), o.Idle, imapProcs(dc), err, lastLines(dc.Log(), 15), lg.logTail())
	}
	time.Sleep(500 * time.Millisecond) // let Legate settle after the last login
	sec.record("idle "+kind+" dovecot imap processes", float64(imapProcs(dc)))
	after, err := lg.Stats()
	if err != nil {
		t.Fatalf("%v", err)
	}
	n := float64(len(conns))
	rss := sec.record("idle "+kind+" rss", float64(after.RSS-before.RSS)/n)
	heap := float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / n
	fds := sec.record("idle "+kind+" fds", float64(after.FDs-before.FDs)/n)
	gs := float64(after.Goroutines-before.Goroutines) / n
	ok := rss <= limit && fds <= 2
	tab.row(fmt.Sprintf("%s (%d sessions)", kind, len(conns)), mib(rss*1000), kib(rss), kib(heap),
		fmt.Sprintf("%.2f", gs), fmt.Sprintf("%.2f", fds), fmt.Sprintf("≤ %.0f KiB, ≤ 2 fds", limit/1024), verdict(ok))

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Wait until Legate has closed the upstream sessions so that the next
	// measurement starts clean.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s, err := lg.Stats()
		if err == nil && s.FDs <= before.FDs+2 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// imapProcs counts the imap (post-login) processes of this Dovecot
// instance by their process title, "dovecot-<instance>/imap [...]".
func imapProcs(dc *testenv.Dovecot) int {
	title := "dovecot-testenv-" + filepath.Base(dc.Dir) + "/imap"
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.TrimRight(string(b), "\x00 ")
		if cmd == title || strings.HasPrefix(cmd, title+" ") {
			n++
		}
	}
	return n
}

// waitIMAPProcs waits up to d until this Dovecot has at most n imap
// processes.
func waitIMAPProcs(dc *testenv.Dovecot, n int, d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline) && imapProcs(dc) > n; {
		time.Sleep(100 * time.Millisecond)
	}
}

// openIdle opens n sessions, 8 at a time, and returns those it opened.
func openIdle(ctx context.Context, n int, open func() (*imapConn, error)) ([]*imapConn, error) {
	conns := make([]*imapConn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			c, err := open()
			conns[i] = c
			errs <- err
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	if first == nil {
		first = ctx.Err()
	}
	return out, first
}

// message returns an RFC 5322 message of about size bytes (CRLF lines).
func message(size int) string {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n" +
		"Subject: legate-bench\r\nMessage-ID: <bench@example.com>\r\n" +
		"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n")
	line := strings.Repeat("0123456789", 7) + "abcd\r\n" // 76 bytes
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.String()
}
