package imap

import (
	"bufio"
	"context"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/legate-proxy/legate/store"
)

// Pre-auth hardening (issues #18 and #13): constant work per command,
// a fresh state after STARTTLS, every bad input counted, the throttled
// answer delivered before the pre-auth deadline, RFC 2971's ID maxima.

// recordingAuth records the requests of an Authenticator.
type recordingAuth struct {
	login.Authenticator
	mu   sync.Mutex
	reqs []login.Request
}

func (r *recordingAuth) Login(ctx context.Context, req login.Request) login.Result {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return r.Authenticator.Login(ctx, req)
}

func (r *recordingAuth) requests() []login.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]login.Request(nil), r.reqs...)
}

// TestSTARTTLSForgetsPlaintextState: an ID sent before STARTTLS (which a
// man in the middle could have written) reaches neither the login service
// (hence the audit, report and last use) nor the session list; an ID after
// the handshake does. The bad-command count starts afresh too.
func TestSTARTTLSForgetsPlaintextState(t *testing.T) {
	for _, secondID := range []bool{false, true} {
		t.Run(fmt.Sprintf("ID after STARTTLS %v", secondID), func(t *testing.T) {
			rec := &recordingAuth{}
			e := newEnv(t, envOptions{mutate: func(o *Options) {
				rec.Authenticator = o.Auth
				o.Auth = rec
				o.MaxBadCommands = 5
			}})
			c := e.dial()
			c.expect("* OK")
			c.send(`i ID ("name" "Forged" "version" "6.6")` + "\r\n")
			c.expect("* ID")
			c.expect("i OK")
			for i := range 4 { // one short of the limit
				c.send(fmt.Sprintf("b%d BOGUS\r\n", i))
				c.expect(fmt.Sprintf("b%d BAD", i))
			}
			c.startTLS(e.certs.ClientTLS)
			want := ""
			if secondID {
				c.send(`j ID ("name" "Real" "version" "1.0")` + "\r\n")
				c.expect("* ID")
				c.expect("j OK")
				want = "Real/1.0"
			}
			for i := range 4 { // the count started afresh
				c.send(fmt.Sprintf("c%d BOGUS\r\n", i))
				c.expect(fmt.Sprintf("c%d BAD", i))
			}
			c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
			c.expect("a OK [CAPABILITY")

			reqs := rec.requests()
			if len(reqs) != 1 || reqs[0].Client != want {
				t.Fatalf("login requests: got %+v, want one with Client %q", reqs, want)
			}
			if !waitFor(2*time.Second, func() bool { return len(e.reg.List("alice")) == 1 }) {
				t.Fatal("session not registered")
			}
			if got := e.reg.List("alice")[0].Client; got != want {
				t.Errorf("session client: got %q, want %q", got, want)
			}
			var recs []store.AuditRecord
			waitFor(3*time.Second, func() bool {
				recs, _ = e.st.AuditLog(context.Background(), store.AuditQuery{User: "alice"})
				return len(recs) > 0
			})
			if len(recs) == 0 {
				t.Fatal("no audit record of the login")
			}
			for _, r := range recs {
				if r.Client != want {
					t.Errorf("audit record %d client: got %q, want %q", r.Seq, r.Client, want)
				}
			}
		})
	}
}

// TestSyntaxErrorsEndConnection: lines of "(" are syntax errors; they
// count toward the bad-command limit like any bad command, so 1,000 of
// them end the connection after the tenth.
func TestSyntaxErrorsEndConnection(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")
	for i := 1; i <= 1000; i++ {
		c.send("(\r\n")
		c.expect("* BAD")
		if i == 10 {
			c.expect("* BYE Too many invalid commands")
			c.expectClosed(2 * time.Second)
			return
		}
	}
	t.Fatal("1,000 syntax errors did not end the connection")
}

// TestBadInputKindsCount: every kind of bad input (a syntax error, an
// unknown command, a bad literal, a bad SASL response, a bad ID) counts
// toward the same limit.
func TestBadInputKindsCount(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.MaxBadCommands = 5 }})
	c := e.dial()
	c.expect("* OK")
	for _, step := range []struct{ send, want string }{
		{"(\r\n", "* BAD"},
		{"a FOO\r\n", "a BAD"},
		{"b LOGIN {99999}\r\n", "b BAD"},
		{"c AUTHENTICATE PLAIN !!\r\n", "c BAD"},
		{"d ID (\"name\")\r\n", "d BAD"},
	} {
		c.send(step.send)
		c.expect(step.want)
	}
	c.expect("* BYE Too many invalid commands")
	c.expectClosed(2 * time.Second)
}

// delayThrottle blocks every login after a delay.
type delayThrottle struct{ delay time.Duration }

func (d delayThrottle) Check(netip.Addr, string) (time.Duration, bool) { return d.delay, true }
func (delayThrottle) Failure(netip.Addr, string)                       {}
func (delayThrottle) Success(netip.Addr, string)                       {}

// TestThrottledAnswerBeforePreauthDeadline: a throttle delay longer than
// what is left of the pre-auth timeout is cut short so that the client
// gets its NO [UNAVAILABLE] before the connection is closed.
func TestThrottledAnswerBeforePreauthDeadline(t *testing.T) {
	const preauth = 1500 * time.Millisecond
	e := newEnv(t, envOptions{throttle: delayThrottle{10 * time.Second},
		mutate: func(o *Options) { o.PreauthTimeout = preauth }})
	c := e.dial()
	start := time.Now()
	c.expect("* OK")
	c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
	c.expect("a " + ansThrottled)
	if d := time.Since(start); d > preauth {
		t.Errorf("answer after %v, want before the pre-auth deadline (%v)", d, preauth)
	}
	c.expect("* BYE Autologout")
	c.expectClosed(2 * time.Second)
}

// idMaxima is an ID command at RFC 2971's maxima: 30 pairs, 30-octet
// fields, 1024-octet values, every value octet needing an escape.
func idMaxima(tag string) string {
	var b strings.Builder
	b.WriteString(tag + " ID (")
	for i := range idMaxPairs {
		if i > 0 {
			b.WriteByte(' ')
		}
		field := fmt.Sprintf("%02d", i) + strings.Repeat("f", idMaxField-2)
		if i == 0 {
			field = "name" + strings.Repeat(" ", idMaxField-4)
		}
		value := strings.Repeat(`\"`, idMaxValue)
		fmt.Fprintf(&b, `"%s" "%s"`, field, value)
	}
	b.WriteString(")\r\n")
	return b.String()
}

// TestIDAtRFCMaxima: an ID at RFC 2971's maxima is accepted (the line
// limit admits it for ID only); one beyond them is refused.
func TestIDAtRFCMaxima(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")
	line := idMaxima("i")
	if len(line) <= 8192 {
		t.Fatalf("test line is %d bytes, want more than the default line limit", len(line))
	}
	c.send(line)
	c.expect("* ID")
	c.expect("i OK")
	// A value over 1024 octets is refused (BAD) but the stream goes on.
	c.send(`j ID ("name" "` + strings.Repeat("x", idMaxValue+1) + `")` + "\r\n")
	c.expect("j BAD")
	// Other commands keep the usual line limit.
	c.send("k LOGIN " + strings.Repeat("x", 9000) + " y\r\n")
	c.expect("* BYE Line too long")
	c.expectClosed(2 * time.Second)

	// An ID line over the ID limit ends the connection too.
	c = e.dial()
	c.expect("* OK")
	c.send(`l ID ("name" "` + strings.Repeat("x", maxIDLine) + `")` + "\r\n")
	c.expect("* BYE Line too long")
}

// maxLineWriter records the longest line written (slog handlers write
// one record per call).
type maxLineWriter struct {
	mu  sync.Mutex
	max int
	n   int
}

func (w *maxLineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.max = max(w.max, len(l))
	}
	w.n++
	return len(b), nil
}

func (w *maxLineWriter) get() (maxLen, lines int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max, w.n
}

// floodClientEnv names the environment variables of the flood client,
// which runs in a child process (TestMain) so that the test process's
// CPU time is Legate's alone.
const (
	floodAddrEnv   = "LEGATE_TEST_FLOOD_ADDR"
	floodCmdEnv    = "LEGATE_TEST_FLOOD_CMD"
	floodSecretEnv = "LEGATE_TEST_FLOOD_SECRET"
)

// floodCount is the number of commands a flood client sends.
const floodCount = 10_000

// TestIDFloodCostsConstantWork: a session with 10,000 ID commands before
// login costs Legate under 1 s of CPU (the quadratic logger of #18 cost
// about 3 s) and writes no log line over 16 KiB. The same flood of NOOPs
// is measured for comparison.
func TestIDFloodCostsConstantWork(t *testing.T) {
	cpu := map[string]time.Duration{}
	for _, cmd := range []string{"NOOP", "ID"} {
		w := &maxLineWriter{}
		e := newEnv(t, envOptions{mutate: func(o *Options) {
			o.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}})
		before := processCPU(t)
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), floodAddrEnv+"="+e.addr, floodCmdEnv+"="+cmd,
			floodSecretEnv+"="+e.secret["alice"])
		out, err := child.CombinedOutput()
		if err != nil {
			t.Fatalf("flood client: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { return len(e.reg.List("")) == 0 }) {
			t.Fatal("session did not end")
		}
		cpu[cmd] = processCPU(t) - before
		maxLen, lines := w.get()
		t.Logf("%d %ss then a login: %v of Legate CPU, %d log lines, longest %d bytes", floodCount, cmd, cpu[cmd], lines, maxLen)
		if maxLen > 16<<10 {
			t.Errorf("%s flood: longest log line %d bytes, want at most 16 KiB", cmd, maxLen)
		}
		if lines == 0 {
			t.Errorf("%s flood: no log line at all", cmd)
		}
	}
	// The race detector slows everything down about tenfold; the
	// quadratic logger cost far more than that (2.3s without it).
	budget := time.Second
	if raceEnabled {
		budget = 10 * time.Second
	}
	if cpu["ID"] > budget {
		t.Errorf("10,000 IDs cost %v of CPU, want under %v", cpu["ID"], budget)
	}
	t.Logf("ID/NOOP CPU ratio: %.2f", float64(cpu["ID"])/float64(cpu["NOOP"]))
}

// processCPU returns the user and system CPU time of this process.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floodClient runs in the child process: it sends floodCount commands in
// batches, reads every answer, logs in and leaves. It returns the exit
// code.
func floodClient(addr, cmd, secret string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "flood client:", err)
		return 1
	}
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(50 * time.Second))
	br := bufio.NewReader(nc)
	expect := func(prefix string) error {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, prefix) {
			return fmt.Errorf("got %q, want prefix %q", l, prefix)
		}
		return nil
	}
	if err := expect("* OK"); err != nil {
		return fail(err)
	}
	const batch = 100
	var b strings.Builder
	for i := 0; i < floodCount; i += batch {
		b.Reset()
		for j := i; j < i+batch; j++ {
			if cmd == "ID" {
				fmt.Fprintf(&b, "t%d ID (\"name\" \"Flood\" \"version\" \"%d\")\r\n", j, j)
			} else {
				fmt.Fprintf(&b, "t%d NOOP\r\n", j)
			}
		}
		if _, err := io.WriteString(nc, b.String()); err != nil {
			return fail(err)
		}
		for j := i; j < i+batch; j++ {
			if cmd == "ID" {
				if err := expect("* ID"); err != nil {
					return fail(err)
				}
			}
			if err := expect(fmt.Sprintf("t%d OK", j)); err != nil {
				return fail(err)
			}
		}
	}
	if _, err := io.WriteString(nc, "a LOGIN alice "+secret+"\r\n"); err != nil {
		return fail(err)
	}
	if err := expect("a OK"); err != nil {
		return fail(err)
	}
	return 0
}

// TestPassClientAddress: with PassClientAddress the upstream gets the
// client's address and port in an ID ahead of the master login (for
// every login form and upstream TLS mode); without it, no ID.
func TestPassClientAddress(t *testing.T) {
	for _, tt := range []struct {
		pass     bool
		mode     string
		noSASLIR bool
		login    string
	}{
		{true, "", false, ""},
		{true, "none", true, ""},
		{true, "implicit", false, "separator"},
		{false, "", false, ""},
	} {
		t.Run(fmt.Sprintf("pass %v, upstream %q, noSASLIR %v, login %q", tt.pass, tt.mode, tt.noSASLIR, tt.login), func(t *testing.T) {
			e := newEnv(t, envOptions{upMode: tt.mode, fake: fakeConfig{noSASLIR: tt.noSASLIR}, mutate: func(o *Options) {
				o.PassClientAddress = tt.pass
				o.Upstream.Login = tt.login
			}})
			c := e.dial()
			c.expect("* OK")
			c.send("a LOGIN alice " + e.secret["alice"] + "\r\nb NOOP\r\n")
			c.expect("a OK [CAPABILITY")
			c.expect("b OK NOOP done")
			ids := e.fake.idList()
			if !tt.pass {
				if len(ids) != 0 {
					t.Fatalf("upstream got IDs %v, want none", ids)
				}
				return
			}
			_, port, _ := net.SplitHostPort(c.c.LocalAddr().String())
			want := map[string]string{"x-originating-ip": "127.0.0.1", "x-originating-port": port}
			if len(ids) != 1 || fmt.Sprint(ids[0]) != fmt.Sprint(want) {
				t.Fatalf("upstream got IDs %v, want one with %v", ids, want)
			}
			if got := e.fake.loginList(); len(got) != 1 || got[0] != "alice" {
				t.Errorf("upstream logins: got %v, want [alice]", got)
			}
		})
	}
}
