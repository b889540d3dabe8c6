package imap

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/connlimit"
)

func (e *env) login(c *client) {
	e.t.Helper()
	c.expect("* OK")
	c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
	c.expect("a OK [CAPABILITY")
}

func TestPipelinedAfterLogin(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")
	c.send("a LOGIN alice " + e.secret["alice"] + "\r\nb SELECT INBOX\r\nc NOOP\r\n")
	c.expect("a OK [CAPABILITY")
	c.expect("b OK SELECT done")
	c.expect("c OK NOOP done")
	if got, want := e.fake.received(), []string{"b SELECT", "c NOOP"}; !slices.Equal(got, want) {
		t.Errorf("upstream received %v, want %v", got, want)
	}
}

func TestRelayIdleAndBigLiteral(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	e.login(c)
	c.send("b IDLE\r\n")
	c.expect("+ idling")
	c.send("DONE\r\n")
	c.expect("b OK IDLE done")
	// A literal far above the pre-auth limit passes untouched.
	big := strings.Repeat("x", 1<<20)
	c.send("c APPEND INBOX {1048576+}\r\n" + big + "\r\n")
	c.expect("c OK APPEND done")
	c.send("d LOGOUT\r\n")
	c.expect("* BYE")
	c.expect("d OK")
	c.expectClosed(2 * time.Second)
	if !waitFor(time.Second, func() bool { return e.reg.Count("") == 0 }) {
		t.Errorf("registry: got %d sessions after logout, want 0", e.reg.Count(""))
	}
}

func TestOversize(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.MaxLineLength = 100; o.MaxLiteralSize = 50 }})

	c := e.dial()
	c.expect("* OK")
	c.send("a LOGIN " + strings.Repeat("x", 200) + "\r\n")
	c.expect("* BYE Line too long")
	c.expectClosed(time.Second)

	c = e.dial()
	c.expect("* OK")
	c.send("a LOGIN {51}\r\n")
	c.expect("a BAD Literal too big")
	c.send("b NOOP\r\n")
	c.expect("b OK")

	c = e.dial()
	c.expect("* OK")
	c.send("a LOGIN {51+}\r\n" + strings.Repeat("y", 51))
	c.expect("* BYE Literal too big")
	c.expectClosed(time.Second)

	// Literals count towards nothing else: at the limit is fine.
	c = e.dial()
	c.expect("* OK")
	c.send("a LOGIN {5+}\r\nalice {50+}\r\n" + strings.Repeat("z", 50) + "\r\n")
	c.expect("a NO [AUTHENTICATIONFAILED]")
}

func TestTooManyBadCommands(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")
	for i := range 10 {
		c.send("x FETCH 1 BODY[]\r\n")
		c.expect("x BAD")
		_ = i
	}
	c.expect("* BYE Too many invalid commands")
	c.expectClosed(time.Second)
}

func TestPreauthTimeout(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.PreauthTimeout = 300 * time.Millisecond }})
	c := e.dial()
	c.expect("* OK")
	start := time.Now()
	// Slow loris: a byte now and then, never a full line.
	for range 3 {
		c.send("a")
		time.Sleep(50 * time.Millisecond)
	}
	c.expect("* BYE Autologout")
	c.expectClosed(time.Second)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("closed after %v, want about 300ms", d)
	}
}

func TestConnectionLimit(t *testing.T) {
	lim := connlimit.New(0, 1)
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.Limiter = lim }})
	c1 := e.dial()
	c1.expect("* OK")
	c2 := e.dial()
	c2.expect("* BYE Too many connections")
	c2.expectClosed(time.Second)
	c1.send("a LOGOUT\r\n")
	c1.expect("* BYE")
	c1.expect("a OK")
	c1.expectClosed(time.Second)
	if !waitFor(time.Second, func() bool { return lim.Total() == 0 }) {
		t.Errorf("limiter: got %d live connections, want 0", lim.Total())
	}
}

func TestRegistryKill(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial()
	c.expect("* OK")
	c.send(`i ID ("name" "Thunderbird" "version" "115.1")` + "\r\n")
	c.expect("* ID")
	c.expect("i OK")
	c.send("a LOGIN alice " + e.secret["alice"] + "\r\n")
	c.expect("a OK [CAPABILITY")
	c.send("b IDLE\r\n")
	c.expect("+ idling")

	list := e.reg.List("alice")
	if len(list) != 1 {
		t.Fatalf("registry: got %d sessions, want 1", len(list))
	}
	s := list[0]
	if s.Client != "Thunderbird/115.1" || s.AppPasswordID != e.apID["alice"] || s.Protocol != "imap" || !s.IP.IsLoopback() {
		t.Errorf("registry info: got %+v, want client Thunderbird/115.1, app password %s, imap, loopback", s, e.apID["alice"])
	}
	start := time.Now()
	if n := e.reg.KillAppPasswords(e.apID["alice"]); n != 1 {
		t.Fatalf("KillAppPasswords: got %d, want 1", n)
	}
	c.expect("* BYE Session revoked")
	c.expectClosed(time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("session closed after %v, want within 1s", d)
	}
	if !waitFor(time.Second, func() bool { return e.reg.Count("") == 0 }) {
		t.Errorf("registry: got %d sessions after kill, want 0", e.reg.Count(""))
	}
}

func TestIdleTimeoutCountsBothDirections(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(o *Options) { o.IdleTimeout = 350 * time.Millisecond }})
	c := e.dial()
	e.login(c)
	// The client stays silent while the upstream sends an update every
	// 100ms for a second: that is activity.
	c.send("t TICK 10\r\n")
	c.expect("t OK")
	for range 10 {
		c.expect("* OK tick")
	}
	// Then nothing either way: closed after the idle timeout.
	start := time.Now()
	c.expectClosed(2 * time.Second)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed %v after the last tick, want about 350ms", d)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, envOptions{})
	pre := e.dial()
	pre.expect("* OK")
	sess := e.dial()
	e.login(sess)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- e.srv.Shutdown(ctx) }()
	pre.expect("* BYE Server shutting down")
	pre.expectClosed(time.Second)
	// The relayed session goes on until the grace period ends.
	sess.send("b NOOP\r\n")
	sess.expect("b OK NOOP done")
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want context.DeadlineExceeded", err)
	}
	sess.expect("* BYE Server shutting down")
	sess.expectClosed(time.Second)
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Errorf("dial after Shutdown succeeded, want refused")
	}
}

func TestShutdownWaitsForSessions(t *testing.T) {
	e := newEnv(t, envOptions{})
	sess := e.dial()
	e.login(sess)
	errc := make(chan error, 1)
	go func() { errc <- e.srv.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("Shutdown returned %v while a session was live", err)
	default:
	}
	sess.send("z LOGOUT\r\n")
	sess.expect("* BYE")
	if err := <-errc; err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
}
