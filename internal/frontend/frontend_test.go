package frontend

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testConn is a connection that waits for its client to close or for
// Kill; it records the reason.
type testConn struct {
	nc     net.Conn
	active atomic.Bool
	panic  bool

	mu      sync.Mutex
	reasons []string
	killed  chan struct{}
	once    sync.Once
}

func (c *testConn) Serve(ctx context.Context) {
	if c.panic {
		panic("boom")
	}
	buf := make([]byte, 16)
	for {
		if _, err := c.nc.Read(buf); err != nil {
			return
		}
	}
}

func (c *testConn) Kill(reason string) {
	c.mu.Lock()
	c.reasons = append(c.reasons, reason)
	c.mu.Unlock()
	c.once.Do(func() { close(c.killed) })
	c.nc.Close()
}

func (c *testConn) Active() bool { return c.active.Load() }

func (c *testConn) reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reasons) == 0 {
		return ""
	}
	return c.reasons[0]
}

type harness struct {
	t     *testing.T
	srv   *Server
	ln    net.Listener
	serve chan error
	conns chan *testConn
	// activate makes new connections active from the start.
	activate bool
	panics   bool
}

func start(t *testing.T, mod ...func(*harness)) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: New(nil), ln: ln, serve: make(chan error, 1), conns: make(chan *testConn, 16)}
	for _, m := range mod {
		m(h)
	}
	go func() {
		h.serve <- h.srv.Serve(ln, func(nc net.Conn) Conn {
			c := &testConn{nc: nc, killed: make(chan struct{}), panic: h.panics}
			c.active.Store(h.activate)
			h.conns <- c
			return c
		})
	}()
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// dial connects a client and returns the server side of it.
func (h *harness) dial() (net.Conn, *testConn) {
	h.t.Helper()
	c, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	select {
	case sc := <-h.conns:
		waitFor(h.t, func() bool { return h.srv.Len() >= 1 })
		return c, sc
	case <-time.After(5 * time.Second):
		h.t.Fatal("connection not accepted")
	}
	return nil, nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) serveErr() error {
	h.t.Helper()
	select {
	case err := <-h.serve:
		return err
	case <-time.After(5 * time.Second):
		h.t.Fatal("Serve did not return")
	}
	return nil
}

func TestDoubleClose(t *testing.T) {
	h := start(t)
	_, sc := h.dial()
	if err := h.srv.Close(); err != nil {
		t.Fatalf("first Close: got %v, want nil", err)
	}
	if err := h.srv.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}
	if got := sc.reason(); got != ReasonShutdown {
		t.Errorf("kill reason: got %q, want %q", got, ReasonShutdown)
	}
	if err := h.serveErr(); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: got %v, want ErrServerClosed", err)
	}
	if n := h.srv.Len(); n != 0 {
		t.Errorf("live connections after Close: got %d, want 0", n)
	}
	if h.srv.Context().Err() == nil {
		t.Errorf("root context after Close: got live, want cancelled")
	}
}

func TestServeAfterClose(t *testing.T) {
	h := start(t)
	h.serveErr2Close(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = h.srv.Serve(ln, func(net.Conn) Conn { t.Fatal("newConn called after Close"); return nil })
	if !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: got %v, want ErrServerClosed", err)
	}
	// The listener was closed even though the server was already closing.
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the listener after Serve returned: got %v, want net.ErrClosed", err)
	}
}

func (h *harness) serveErr2Close(t *testing.T) {
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.serveErr(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: got %v, want ErrServerClosed", err)
	}
}

func TestShutdownKillsPreloginWaitsForActive(t *testing.T) {
	h := start(t)
	preClient, pre := h.dial()
	activeClient, act := h.dial()
	act.active.Store(true)
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Shutdown(context.Background()) }()
	select {
	case <-pre.killed:
	case <-time.After(2 * time.Second):
		t.Fatal("pre-login connection not killed by Shutdown")
	}
	if got := pre.reason(); got != ReasonShutdown {
		t.Errorf("kill reason: got %q, want %q", got, ReasonShutdown)
	}
	_ = preClient
	if err := h.serveErr(); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: got %v, want ErrServerClosed", err)
	}
	if _, err := net.DialTimeout("tcp", h.ln.Addr().String(), time.Second); err == nil {
		t.Errorf("dial during Shutdown: got nil error, want refused")
	}
	select {
	case err := <-errc:
		t.Fatalf("Shutdown returned %v while an active connection is live", err)
	case <-time.After(200 * time.Millisecond):
	}
	// An active connection that logs out (becomes inactive) is killed by
	// the poll; one that ends on its own ends Shutdown.
	act.active.Store(false)
	select {
	case <-act.killed:
	case <-time.After(2 * time.Second):
		t.Fatal("connection that became inactive not killed during Shutdown")
	}
	_ = activeClient
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Shutdown: got %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if h.srv.Context().Err() == nil {
		t.Errorf("root context after Shutdown: got live, want cancelled")
	}
}

func TestShutdownDeadline(t *testing.T) {
	h := start(t, func(h *harness) { h.activate = true })
	_, act := h.dial()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("Shutdown took %v, want about 150ms", d)
	}
	select {
	case <-act.killed:
	default:
		t.Errorf("active connection not killed when the deadline passed")
	}
	if n := h.srv.Len(); n != 0 {
		t.Errorf("live connections after Shutdown: got %d, want 0", n)
	}
	// Close afterwards is harmless.
	if err := h.srv.Close(); err != nil {
		t.Errorf("Close after Shutdown: got %v, want nil", err)
	}
}

func TestPanicEndsOnlyThatConnection(t *testing.T) {
	h := start(t, func(h *harness) { h.panics = true })
	c, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-h.conns
	select {
	case <-sc.killed:
	case <-time.After(2 * time.Second):
		t.Fatal("panicking connection not killed")
	}
	waitFor(t, func() bool { return h.srv.Len() == 0 })
	if _, err := net.Dial("tcp", h.ln.Addr().String()); err != nil {
		t.Fatalf("dial after a panic: %v", err)
	}
}

// slowListener's Accept returns its error only after a delay once closed.
type slowListener struct{ net.Listener }

func (l slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		time.Sleep(200 * time.Millisecond)
	}
	return c, err
}

// TestServeCountedInWaitGroup: Close returns only after Serve has.
func TestServeCountedInWaitGroup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(nil)
	var returned atomic.Bool
	started := make(chan struct{})
	go func() {
		close(started)
		_ = srv.Serve(slowListener{ln}, func(nc net.Conn) Conn { return &testConn{nc: nc, killed: make(chan struct{})} })
		returned.Store(true)
	}()
	<-started
	waitFor(t, func() bool { srv.mu.Lock(); defer srv.mu.Unlock(); return len(srv.listeners) == 1 })
	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Close returned after %v, want it to wait for Serve (about 200ms)", d)
	}
	waitFor(t, returned.Load)
}

// detachedConn hands its work to a goroutine of its own and returns from
// Serve at once, as the IMAP relay does.
type detachedConn struct {
	testConn
	srv      *Server
	released chan struct{}
}

func (c *detachedConn) Serve(ctx context.Context) {
	release := c.srv.Detach(c)
	go func() {
		defer close(c.released)
		defer release()
		c.testConn.Serve(ctx)
	}()
}

func TestDetachedConnectionTrackedUntilRelease(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(nil)
	conns := make(chan *detachedConn, 1)
	serveErr := make(chan error, 1)
	go func() {
		serveErr <- srv.Serve(ln, func(nc net.Conn) Conn {
			c := &detachedConn{testConn: testConn{nc: nc, killed: make(chan struct{})}, srv: srv, released: make(chan struct{})}
			c.active.Store(true)
			conns <- c
			return c
		})
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-conns
	time.Sleep(50 * time.Millisecond) // Serve has returned by now
	if n := srv.Len(); n != 1 {
		t.Fatalf("live connections after a detached Serve returned: got %d, want 1", n)
	}
	// Shutdown waits for the detached, active connection, and kills it
	// when its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want DeadlineExceeded (it must wait for the detached connection)", err)
	}
	if got := c.reason(); got != ReasonShutdown {
		t.Errorf("kill reason: got %q, want %q", got, ReasonShutdown)
	}
	select {
	case <-c.released:
	default:
		t.Errorf("Shutdown returned before the detached connection's goroutine released it")
	}
	if n := srv.Len(); n != 0 {
		t.Errorf("live connections after Shutdown: got %d, want 0", n)
	}
	if err := <-serveErr; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: got %v, want ErrServerClosed", err)
	}
}
