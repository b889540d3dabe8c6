package imap

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
)

// Relay buffers: each direction reads into a small buffer and takes a big
// pooled one only while data keeps coming, so an idle session holds no big
// buffer.
const (
	smallBuf = 512
	bigBuf   = 16 << 10
)

// newBufPool returns the pool of big relay buffers (one per Server).
func newBufPool() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}
}

// session answers the client's login, registers the session and relays
// bytes until either side closes.
func (c *conn) session(tag string, res auth.Result, ul *upstreamLogin) {
	var apID string
	if res.AppPassword != nil {
		apID = res.AppPassword.ID
	}
	id, done := "", func() {}
	if reg := c.opts.Sessions; reg != nil {
		id, done = reg.Register(session.Info{
			User: res.User.Name, AppPasswordID: apID, Protocol: policy.IMAP, IP: c.ip, Client: c.client,
		}, func() { c.kill("Session revoked") })
	}
	defer done()
	log := c.log.With("user", res.User.Name, "session", id)

	c.mu.Lock()
	c.state = stateRelay
	c.up = ul.conn
	client := c.nc
	c.mu.Unlock()

	_ = client.SetDeadline(time.Now().Add(c.opts.Upstream.IOTimeoutOrDefault()))
	if c.writeLine(tag+" OK [CAPABILITY "+ul.caps+"] Logged in") != nil {
		return
	}
	// Commands the client pipelined after its login belong upstream.
	var pending []byte
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		pending = append([]byte(nil), b...)
	}
	// Drop the pre-auth buffers: an idle session should stay small.
	c.br, c.p = nil, parser{}
	log.Info("session started", "app_password", apID)
	start := time.Now()
	up, down := c.relay(client, ul.conn, pending, ul.buffered)
	log.Info("session ended", "duration", time.Since(start).Round(time.Millisecond),
		"bytes_in", up, "bytes_out", down)
}

// relayState is shared by both directions of one session.
type relayState struct {
	c    *conn
	idle time.Duration
	m    Metrics
	last atomic.Int64 // unix nanoseconds of the last traffic either way
}

func (r *relayState) touch() { r.last.Store(time.Now().UnixNano()) }

// count reports n bytes relayed (once per chunk, not per byte).
func (r *relayState) count(toClient bool, n int) {
	if n <= 0 {
		return
	}
	dir := dirToUpstream
	if toClient {
		dir = dirToClient
	}
	r.m.RelayedBytes(policy.IMAP, dir, n)
}

func (r *relayState) deadline() time.Time { return time.Unix(0, r.last.Load()).Add(r.idle) }

// relay copies bytes both ways: the calling goroutine carries client to
// upstream, one more goroutine upstream to client. toUp and toClient are
// sent first. It returns the byte counts and closes both connections.
func (c *conn) relay(client, up net.Conn, toUp, toClient []byte) (nUp, nDown int64) {
	r := &relayState{c: c, idle: c.opts.idleTimeout(), m: c.opts.metrics()}
	r.touch()
	downDone := make(chan struct{})
	go func() {
		defer close(downDone)
		defer func() {
			if p := recover(); p != nil {
				c.log.Error("panic in relay", "panic", p, "stack", string(debug.Stack()))
			}
			c.closeConns()
		}()
		if len(toClient) > 0 {
			if r.write(client, toClient, true) != nil {
				return
			}
			r.count(true, len(toClient))
		}
		nDown = r.pump(up, client, true) + int64(len(toClient))
	}()
	if len(toUp) == 0 || r.write(up, toUp, false) == nil {
		r.count(false, len(toUp))
		nUp = r.pump(client, up, false) + int64(len(toUp))
	}
	c.closeConns()
	<-downDone
	return nUp, nDown
}

// pump copies src to dst until either fails or the session is idle too
// long. toClient says dst is the client (writes are then serialised with
// farewells).
func (r *relayState) pump(src, dst net.Conn, toClient bool) int64 {
	var n int64
	small := make([]byte, smallBuf)
	var big *[]byte
	defer func() {
		if big != nil {
			r.c.srv.bufs.Put(big)
		}
	}()
	for {
		buf := small
		if big != nil {
			buf = *big
		}
		if src.SetReadDeadline(r.deadline()) != nil {
			return n
		}
		k, err := src.Read(buf)
		if k > 0 {
			r.touch()
			if r.write(dst, buf[:k], toClient) != nil {
				return n
			}
			r.count(toClient, k)
			n += int64(k)
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(r.deadline()) {
				continue // the other direction was active
			}
			return n
		}
		switch {
		case big == nil && k == len(small):
			big = r.c.srv.bufs.Get().(*[]byte)
		case big != nil && k < len(*big):
			r.c.srv.bufs.Put(big)
			big = nil
		}
	}
}

func (r *relayState) write(dst net.Conn, b []byte, toClient bool) error {
	if toClient {
		r.c.wsem <- struct{}{}
		defer func() { <-r.c.wsem }()
		if r.c.killed.Load() {
			return io.ErrClosedPipe
		}
	}
	if err := dst.SetWriteDeadline(time.Now().Add(r.idle)); err != nil {
		return err
	}
	_, err := dst.Write(b)
	return err
}
