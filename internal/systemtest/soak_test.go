package systemtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/go-ldap/ldap/v3"

	"github.com/legate-proxy/legate/internal/config"
)

// soakSize is the number of sessions and how many run at once. Dovecot's
// default_process_limit (100) bounds how many IMAP sessions can be live.
func soakSize() (sessions, workers int) {
	if os.Getenv("LEGATE_SOAK") == "1" {
		return 2000, 60
	}
	return 300, 45
}

type soakEnv struct {
	lg    *Legate
	ups   *Upstreams
	pws   map[string]string
	users []string
}

// session runs one client session of kind i%3 and returns its error.
func (e *soakEnv) session(i int) error {
	user := e.users[i%len(e.users)]
	pw := e.pws[user]
	tc := e.lg.ClientTLS()
	switch i % 3 {
	case 0: // IMAP: log in, select, stay idle a while, NOOP, log out.
		c, err := imapclient.DialTLS(e.lg.Addr("imaps").String(), &imapclient.Options{TLSConfig: tc})
		if err != nil {
			return fmt.Errorf("imap dial: %w", err)
		}
		defer c.Close()
		if err := c.Login(user, pw).Wait(); err != nil {
			return fmt.Errorf("imap login: %w", err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			return fmt.Errorf("imap select: %w", err)
		}
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		if err := c.Noop().Wait(); err != nil {
			return fmt.Errorf("imap noop after idle: %w", err)
		}
		return c.Logout().Wait()
	case 1: // SMTP: AUTH after STARTTLS, one message.
		c, err := smtp.DialStartTLS(e.lg.Addr("submission").String(), tc)
		if err != nil {
			return fmt.Errorf("smtp dial: %w", err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", user, pw)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
		from := user + "@example.com"
		msg := fmt.Sprintf("From: %s\r\nTo: bob@example.com\r\nSubject: soak %d\r\n\r\nmessage %d\r\n", from, i, i)
		if err := c.SendMail(from, []string{"bob@example.com"}, strings.NewReader(msg)); err != nil {
			return fmt.Errorf("smtp send: %w", err)
		}
		return c.Quit()
	default: // LDAP: bind, search, unbind.
		c, err := ldap.DialURL("ldaps://"+e.lg.Addr("ldaps").String(), ldap.DialWithTLSConfig(tc))
		if err != nil {
			return fmt.Errorf("ldap dial: %w", err)
		}
		defer c.Close()
		c.SetTimeout(20 * time.Second)
		if err := c.Bind(user, pw); err != nil {
			return fmt.Errorf("ldap bind: %w", err)
		}
		sr, err := c.Search(ldap.NewSearchRequest("ou=people,"+e.ups.Slapd.BaseDN, ldap.ScopeWholeSubtree,
			ldap.NeverDerefAliases, 0, 10, false, "(uid=bob)", []string{"mail"}, nil))
		if err != nil {
			return fmt.Errorf("ldap search: %w", err)
		}
		if len(sr.Entries) != 1 {
			return fmt.Errorf("ldap search: %d entries, want 1", len(sr.Entries))
		}
		return c.Unbind()
	}
}

// upstreamDownAnswer reports whether err is what a client should see while
// the mail upstream restarts: NO [UNAVAILABLE], 454/421, or the relayed
// session closed under it.
func upstreamDownAnswer(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 454 || se.Code == 421
	}
	s := err.Error()
	for _, ok := range []string{"UNAVAILABLE", "EOF", "connection reset", "closed", "broken pipe", "454", "421"} {
		if strings.Contains(s, ok) {
			return true
		}
	}
	return false
}

// TestSoak holds concurrent IMAP, SMTP and LDAP sessions through Legate to
// the real upstreams, restarts Dovecot halfway, and checks the answers
// during the outage, the reconnection after it, and that goroutines, file
// descriptors and memory come back to where they started.
func TestSoak(t *testing.T) {
	total, workers := soakSize()
	ups := StartUpstreams(t, UpstreamOptions{Mail: true, LDAP: true})
	lg := StartLegate(t, LegateOptions{Upstreams: ups, LogLimit: 64 << 10, Mutate: func(c *config.Config) {
		c.Limits.MaxConnections = 20000
		c.Limits.MaxConnectionsPerIP = 10000
		c.Log.Level = "warn" // bounded log buffer: keep the warnings
	}})
	e := &soakEnv{lg: lg, ups: ups, users: []string{"alice", "bob"}, pws: map[string]string{}}
	for _, u := range e.users {
		e.pws[u] = lg.CreateAppPassword(t, u, "Soak")
	}
	// Warm up with one burst at full concurrency, so that the baseline is a
	// process that has already served the peak once: the LDAP pool is full,
	// the runtime's stack and span caches have grown. A leak still shows,
	// since it grows with the number of sessions, not with the peak.
	var wwg sync.WaitGroup
	werrs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			if err := e.session(i); err != nil {
				werrs <- fmt.Errorf("warm-up session %d: %w", i, err)
			}
		}()
	}
	wwg.Wait()
	close(werrs)
	for err := range werrs {
		t.Fatal(err)
	}
	base := measure(t)
	writeHeapProfile(t, "base")
	start := time.Now()

	var (
		next, live, peak, okN atomic.Int64
		downFrom, downTo      atomic.Int64 // unix nanos of the outage window
		mu                    sync.Mutex
		expected, unexpected  []string
	)
	downFrom.Store(1 << 62)
	downTo.Store(1 << 62)
	halfway := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				if i == total/2 {
					once.Do(func() { close(halfway) })
				}
				n := live.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				t0 := time.Now().UnixNano()
				err := e.session(i)
				t1 := time.Now().UnixNano()
				live.Add(-1)
				if err == nil {
					okN.Add(1)
					continue
				}
				time.Sleep(200 * time.Millisecond) // a client backs off before retrying
				// Sessions overlapping the outage (plus slack for the close
				// to reach the client) may fail, with the right answer.
				inWindow := t1 >= downFrom.Load() && t0 <= downTo.Load()+int64(2*time.Second)
				mu.Lock()
				if inWindow && i%3 != 2 && upstreamDownAnswer(err) {
					expected = append(expected, fmt.Sprintf("session %d: %v", i, err))
				} else {
					unexpected = append(unexpected, fmt.Sprintf("session %d (kind %d): %v", i, i%3, err))
				}
				mu.Unlock()
			}
		}()
	}
	<-halfway
	downFrom.Store(time.Now().UnixNano())
	ups.Dovecot.Stop()
	time.Sleep(time.Second) // sessions now meet a dead upstream
	ups.Dovecot.Start()
	downTo.Store(time.Now().UnixNano())
	wg.Wait()
	elapsed := time.Since(start)

	// Reconnection after the restart works on both mail protocols.
	for i := 0; i < 2; i++ {
		if err := e.session(i); err != nil {
			t.Errorf("session after Dovecot restart (kind %d): %v", i, err)
		}
	}
	after := waitSettled(t, base, 2, 2, 10*time.Second)
	writeHeapProfile(t, "after")
	rssGrowth := float64(after.RSSKiB-base.RSSKiB) / float64(base.RSSKiB)
	t.Logf("soak: %d sessions (%d at once, peak %d live) in %v: %d ok, %d expected failures during the Dovecot restart, %d unexpected",
		total, workers, peak.Load(), elapsed.Round(time.Millisecond), okN.Load(), len(expected), len(unexpected))
	t.Logf("soak: goroutines %d -> %d, fds %d -> %d, RSS %d KiB -> %d KiB (%+.1f%%), heap in use %d KiB -> %d KiB",
		base.Goroutines, after.Goroutines, base.FDs, after.FDs, base.RSSKiB, after.RSSKiB, 100*rssGrowth, base.HeapKiB, after.HeapKiB)
	for i, s := range expected {
		if i == 5 {
			break
		}
		t.Logf("expected: %s", s)
	}
	for _, s := range unexpected {
		t.Errorf("unexpected failure: %s", s)
	}
	if len(unexpected) > 0 {
		t.Logf("legate warnings:\n%s", grepLines(lg.Logs.String(), 30, "level=WARN", "level=ERROR"))
		t.Logf("dovecot warnings:\n%s", grepLines(ups.Dovecot.Log(), 30, "Error", "Fatal", "Panic", "master: Warning", "imap-login: Warning", "imap("))
	}
	if len(expected) == 0 {
		t.Errorf("no session saw the Dovecot restart; the outage was not exercised")
	}
	if okN.Load() < int64(total/2) {
		t.Errorf("%d of %d sessions succeeded, want at least half", okN.Load(), total)
	}
	if after.Goroutines > base.Goroutines+2 {
		t.Errorf("goroutines: %d after the soak, baseline %d: leak\n%s", after.Goroutines, base.Goroutines, goroutineDump())
	}
	if after.FDs > base.FDs+2 {
		t.Errorf("fds: %d after the soak, baseline %d: leak", after.FDs, base.FDs)
	}
	if rssGrowth > 0.10 && !raceEnabled {
		t.Errorf("RSS grew %.1f%% (%d -> %d KiB), want at most 10%%", 100*rssGrowth, base.RSSKiB, after.RSSKiB)
	}
}

// grepLines returns up to n lines of text that contain any of words.
func grepLines(text string, n int, words ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
		if len(out) == n {
			break
		}
	}
	return strings.Join(out, "\n")
}

// writeHeapProfile writes a heap profile to $LEGATE_SOAK_PROFILE_DIR/name.pprof
// when that variable is set (to find what a growing heap holds).
func writeHeapProfile(t *testing.T, name string) {
	dir := os.Getenv("LEGATE_SOAK_PROFILE_DIR")
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}
