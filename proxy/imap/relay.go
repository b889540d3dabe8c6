package imap

import (
	"errors"
	"github.com/legate-proxy/legate/internal/login"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
)

// Relay buffers. A direction whose source is a plain socket waits for data
// without any buffer (see readiness) and takes a big pooled buffer only to
// read what has arrived; other sources (TLS) read into a small buffer and
// take a big one only while data keeps coming. Either way an idle session
// holds no big buffer.
const (
	smallBuf = 512
	bigBuf   = 16 << 10
)

// After the client has closed its side of the connection (shutdown
// SHUT_WR), the upstream's answers to what it sent are still relayed, for
// drainTimeout at most. Over plain TCP the end of stream is passed on and
// the upstream closes once it has answered. Over TLS it is not: Dovecot
// drops every pending command on a close_notify or a bare FIN (it answers
// nothing at all to a client that does so directly), so the drain ends
// once the upstream has been quiet for Options.drainQuiet instead, and
// happens only when the client's last bytes are still unanswered (else the
// client most likely went away, and the session ends at once).
const drainTimeout = 30 * time.Second

// newBufPool returns the pool of big relay buffers (one per Server).
func newBufPool() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}
}

// relay is a logged-in session, shared by its two directions. Each runs on
// a goroutine of its own, started fresh after login (with a small stack:
// the connection goroutine, whose stack grew during the login dialogue,
// ends); the last one to finish ends the connection.
type relay struct {
	c        *conn
	user, id string
	done     func() // unregisters the session
	// release tells the frame the connection has ended (frontend.Detach).
	release func()
	start   time.Time
	last    atomic.Int64 // unix nanoseconds of the last traffic either way
	// clientLast says the client sent the last bytes relayed (it may be
	// waiting for answers); the upstream's bytes clear it.
	clientLast atomic.Bool
	// drainEnd is set (unix nanoseconds) once the client has closed its
	// side: the upstream's answers are relayed until then at most, and,
	// when drainQuiet (nanoseconds) is set, until the upstream has been
	// quiet that long. drainQuiet is stored first.
	drainEnd   atomic.Int64
	drainQuiet atomic.Int64
	left       atomic.Int32 // directions still running
	nUp, nDown int64        // bytes relayed, each set by its direction
}

// register adds the session to the registry before the upstream is
// dialled, so that a revocation during the upstream login closes it (the
// kill cancels the dial).
func (c *conn) register(res login.Result) (id string, done func()) {
	reg := c.opts.Sessions
	if reg == nil {
		return "", func() {}
	}
	return reg.Register(session.Info{
		User: res.User.Name, AppPasswordID: res.AppPasswordID(), Protocol: policy.IMAP, IP: c.ip, Client: c.client, TLS: c.isTLS,
	}, func() { c.Kill("Session revoked") })
}

// confirm re-decides the registered session once its upstream is up.
func (c *conn) confirm(id string) bool {
	reg := c.opts.Sessions
	return reg == nil || reg.Confirm(c.ctx, id)
}

// session answers the client's login and hands the registered session to
// two relay goroutines. The connection goroutine returns afterwards; the
// frame keeps the connection tracked until the last relay goroutine ends.
func (c *conn) session(tag string, res login.Result, ul *upstreamLogin, id string, done func()) {
	apID := res.AppPasswordID()
	r := &relay{c: c, user: res.User.Name, id: id, done: done}

	c.mu.Lock()
	c.state = stateRelay
	c.up = ul.conn
	client := c.nc
	c.mu.Unlock()

	_ = client.SetDeadline(time.Now().Add(ul.cfg.IOTimeoutOrDefault()))
	if c.writeLine(tag+" OK [CAPABILITY "+ul.caps+"] Logged in") != nil {
		r.done()
		return
	}
	// Commands the client pipelined after its login belong upstream.
	var pending []byte
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		pending = append([]byte(nil), b...)
	}
	c.log.Info("session started", "user", r.user, "session", r.id, "app_password", apID)

	// Drop everything the pre-auth dialogue needed: an idle session
	// should stay small.
	c.cancelPreauth()
	c.preauth = nil
	c.handedOff = true
	r.release = c.srv.fe.Detach(c)
	r.start = time.Now()
	r.touch()
	r.left.Store(2)
	go r.run(client, ul.conn, pending, false)
	go r.run(ul.conn, client, ul.buffered, true)
}

func (r *relay) touch() { r.last.Store(time.Now().UnixNano()) }

// deadline is when the session is idle too long, both directions counted,
// or when draining the upstream's answers ends.
func (r *relay) deadline() time.Time {
	last := r.last.Load()
	d := last + int64(r.c.opts.idleTimeout())
	if end := r.drainEnd.Load(); end != 0 {
		if q := r.drainQuiet.Load(); q > 0 {
			d = min(d, last+q)
		}
		d = min(d, end)
	}
	return time.Unix(0, d)
}

// count reports n bytes relayed (once per chunk, not per byte).
func (r *relay) count(toClient bool, n int) {
	if n <= 0 {
		return
	}
	dir := frontend.DirToUpstream
	if toClient {
		dir = frontend.DirToClient
	}
	r.c.opts.metrics().RelayedBytes(policy.IMAP, dir, n)
}

// run relays one direction, src to dst, after sending first. toClient says
// dst is the client.
func (r *relay) run(src, dst net.Conn, first []byte, toClient bool) {
	var n int64
	halfClosed := false
	defer func() {
		if p := recover(); p != nil {
			r.c.logger().Error("panic in relay", "panic", p, "stack", string(debug.Stack()))
		}
		r.exit(toClient, n, halfClosed)
	}()
	if len(first) > 0 {
		if r.write(dst, first, toClient) != nil {
			return
		}
		r.count(toClient, len(first))
		n = int64(len(first))
	}
	k, eof := r.pump(src, dst, toClient)
	n += k
	if eof && !toClient {
		halfClosed = r.halfClose(dst)
	}
}

// halfClose lets the upstream's answers reach the client after the
// client's end of stream: over plain TCP it closes the upstream's write
// side (the upstream answers what it was sent, then closes); otherwise it
// waits for the upstream to go quiet. Either way the drain is bounded. It
// reports whether the drain began; if not, the session ends at once.
func (r *relay) halfClose(up net.Conn) bool {
	if r.c.killed.Load() {
		return false
	}
	tcp, plain := up.(*net.TCPConn)
	if !plain {
		if !r.clientLast.Load() {
			// Everything the client sent has been answered (at least in
			// part): nothing to wait for; a client that went away
			// (the usual end of stream) must not hold the session.
			return false
		}
		r.drainQuiet.Store(int64(r.c.opts.drainQuietOrDefault()))
	}
	r.touch()
	r.drainEnd.Store(time.Now().Add(r.c.opts.drainMaxOrDefault()).UnixNano())
	// The other direction re-arms its read deadline from r.deadline()
	// and checks drainEnd again afterwards, so this cannot be overwritten.
	if up.SetReadDeadline(r.deadline()) != nil {
		return false
	}
	return !plain || tcp.CloseWrite() == nil
}

// exit ends one direction. Unless the client only closed its side
// (halfClosed, the upstream's answers still on their way), it closes both
// connections, which ends the other direction too; the last direction out
// ends the session.
func (r *relay) exit(toClient bool, n int64, halfClosed bool) {
	if toClient {
		r.nDown = n
	} else {
		r.nUp = n
	}
	if !halfClosed {
		r.c.closeConns()
	}
	if r.left.Add(-1) > 0 {
		return
	}
	r.done()
	r.c.logger().Info("session ended", "user", r.user, "session", r.id,
		"duration", time.Since(r.start).Round(time.Millisecond), "bytes_in", r.nUp, "bytes_out", r.nDown)
	r.c.end()
	r.release()
}

// pump copies src to dst until either fails or the session is idle too
// long. toClient says dst is the client (writes are then serialised with
// farewells). It returns the bytes copied and whether src ended its
// stream cleanly (io.EOF).
func (r *relay) pump(src, dst net.Conn, toClient bool) (int64, bool) {
	var n int64
	wait := readiness(src)
	var small []byte
	if wait == nil {
		small = make([]byte, smallBuf)
	}
	pool := r.c.srv.bufs
	var big *[]byte
	drop := func() {
		if big != nil {
			pool.Put(big)
			big = nil
		}
	}
	defer drop()
	for {
		drain := r.drainEnd.Load()
		if src.SetReadDeadline(r.deadline()) != nil {
			return n, false
		}
		if r.drainEnd.Load() != drain {
			continue // the drain began meanwhile: arm its deadline
		}
		if wait != nil && big == nil {
			if err := wait(); err != nil {
				if r.stillActive(err) {
					continue
				}
				return n, false
			}
			big = pool.Get().(*[]byte)
		}
		buf := small
		if big != nil {
			buf = *big
		}
		k, err := src.Read(buf)
		if k > 0 {
			r.touch()
			if r.write(dst, buf[:k], toClient) != nil {
				return n, false
			}
			r.count(toClient, k)
			n += int64(k)
		}
		if err != nil {
			if r.stillActive(err) {
				drop()
				continue
			}
			return n, errors.Is(err, io.EOF)
		}
		switch {
		case big == nil && k == len(small):
			big = pool.Get().(*[]byte)
		case big != nil && k < len(*big):
			drop()
		}
	}
}

// stillActive reports whether err is a read deadline that passed while
// the other direction kept the session alive.
func (r *relay) stillActive(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(r.deadline())
}

// write relays b to dst. It notes which side sent last before the bytes
// can reach the other end (and draw an answer or an end of stream).
func (r *relay) write(dst net.Conn, b []byte, toClient bool) error {
	r.clientLast.Store(!toClient)
	if toClient {
		r.c.wsem <- struct{}{}
		defer func() { <-r.c.wsem }()
		if r.c.killed.Load() {
			return io.ErrClosedPipe
		}
	}
	if err := dst.SetWriteDeadline(time.Now().Add(r.c.opts.idleTimeout())); err != nil {
		return err
	}
	_, err := dst.Write(b)
	return err
}
