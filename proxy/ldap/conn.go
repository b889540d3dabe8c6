package ldap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"github.com/legate-proxy/legate/internal/login"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/connlimit"
	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/policy"
)

// clientConn is one client connection: a reader goroutine (serve) that
// decodes and dispatches requests, and a writer goroutine that sends
// whatever the session or the upstream demux readers queue.
type clientConn struct {
	srv  *Server
	opts *Options
	log  *slog.Logger
	ip   netip.Addr

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	ncMu sync.Mutex
	nc   net.Conn // replaced once by StartTLS
	br   *bufio.Reader
	tls  bool

	// The client's queue (#13.3): whatever the session or the upstream
	// demux readers have for the client, bounded in bytes. queue never
	// blocks; a client whose queue overflows is disconnected.
	qmu     sync.Mutex
	q       [][]byte
	qBytes  int
	killed  bool          // no more writes: the connection is ending
	qSignal chan struct{} // capacity 1: the queue has something

	wmu        sync.Mutex    // held around each write to nc (writer, kill)
	flushed    chan struct{} // signalled after the writer sent a flush marker
	done       chan struct{} // closed when the reader ends
	writerDone chan struct{}
	killOnce   sync.Once

	mu          sync.Mutex
	user        *login.User // nil: not bound (or anonymous)
	sessionID   string
	sessionDone func()
	ops         map[int64]*op // in flight, by client message ID
	sticky      *upConn       // the session's own upstream connection for paged searches
}

// flushMarker asks the writer to signal c.flushed once everything queued
// before it has been written (StartTLS must answer in plaintext first).
var flushMarker = []byte{}

func newClientConn(s *Server, nc net.Conn, implicitTLS bool) *clientConn {
	o := s.opts.Load()
	c := &clientConn{
		srv: s, opts: o, nc: nc, tls: implicitTLS, ip: connlimit.RemoteIP(nc),
		qSignal: make(chan struct{}, 1), flushed: make(chan struct{}, 1),
		done: make(chan struct{}), writerDone: make(chan struct{}),
		ops: make(map[int64]*op),
	}
	c.log = o.logger().With("proto", "ldap", "ip", c.ip.String())
	c.ctx, c.cancel = context.WithCancel(s.fe.Context())
	return c
}

func (c *clientConn) conn() net.Conn {
	c.ncMu.Lock()
	defer c.ncMu.Unlock()
	return c.nc
}

// Kill ends the connection from another goroutine (shutdown) with a
// Notice of Disconnection saying reason.
func (c *clientConn) Kill(reason string) { c.kill(resultUnavailable, reason) }

// Active reports whether the connection is bound: Shutdown lets it finish.
func (c *clientConn) Active() bool { return c.isBound() }

func (c *clientConn) isBound() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user != nil
}

// Serve runs the connection until the client leaves, an error, or a kill.
// Its context is the one newClientConn derived from the frame's root
// context. A panic is the frame's to log (it then calls Kill).
func (c *clientConn) Serve(context.Context) {
	defer c.cancel()
	if l := c.opts.Limiter; l != nil {
		release, ok := l.Acquire(c.ip)
		if !ok {
			c.log.Warn("ldap connection refused: too many connections")
			c.kill(resultBusy, "too many connections")
			return
		}
		defer release()
	}
	if c.tls {
		tc := tls.Server(c.nc, c.opts.TLS)
		tc.SetDeadline(time.Now().Add(c.opts.preauthTimeout()))
		if err := tc.HandshakeContext(c.ctx); err != nil {
			c.log.Debug("ldaps handshake failed", "err", err)
			c.nc.Close()
			return
		}
		c.ncMu.Lock()
		c.nc = tc
		c.ncMu.Unlock()
	}
	c.br = bufio.NewReaderSize(c.conn(), 16<<10)
	go c.writer()
	defer c.finish()

	for {
		timeout := c.opts.preauthTimeout()
		if c.isBound() {
			timeout = c.opts.idleTimeout()
		}
		c.conn().SetReadDeadline(time.Now().Add(timeout))
		m, err := readMessage(c.br, c.opts.maxPDU())
		if err != nil {
			switch {
			case errors.Is(err, ErrProtocol):
				c.log.Warn("ldap protocol error, closing", "err", err)
				c.kill(resultProtocolError, "malformed message")
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			default:
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.kill(resultUnavailable, "idle timeout")
				}
			}
			return
		}
		if !c.handle(m) {
			return
		}
	}
}

// finish tears the connection down: the writer stops, outstanding upstream
// requests are abandoned, the session is unregistered.
func (c *clientConn) finish() {
	select {
	case <-c.done:
		return
	default:
	}
	close(c.done)
	c.conn().Close()
	<-c.writerDone
	c.mu.Lock()
	ops := c.ops
	c.ops = make(map[int64]*op)
	c.mu.Unlock()
	for _, o := range ops {
		o.conn.abandon(o)
	}
	c.mu.Lock()
	sticky := c.sticky
	c.sticky = nil
	c.mu.Unlock()
	sticky.closePrivate()
	c.endSession()
}

// endSession unregisters the bound session, if any.
func (c *clientConn) endSession() {
	c.mu.Lock()
	done, user, id := c.sessionDone, c.user, c.sessionID
	c.user, c.sessionDone, c.sessionID = nil, nil, ""
	c.mu.Unlock()
	if done != nil {
		done()
	}
	if user != nil {
		c.log.Info("ldap session ended", "user", user.Name, "session", id)
	}
}

// kill sends a Notice of Disconnection (RFC 4511 §4.4.1) with a short
// deadline and closes the connection; the reader then finishes. Safe from
// any goroutine; only the first call acts. It waits at most for the
// writer's current write (cut short by the same deadline) and its own: it
// must not be called from an upstream demux reader (see dropNow).
func (c *clientConn) kill(code int, diag string) {
	c.killOnce.Do(func() {
		c.cancel()
		c.qmu.Lock()
		c.killed, c.q, c.qBytes = true, nil, 0
		c.qmu.Unlock()
		nc := c.conn()
		nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		c.wmu.Lock()
		_, _ = nc.Write(noticeOfDisconnection(code, diag))
		c.wmu.Unlock()
		nc.Close()
	})
}

// dropNow (under killOnce) closes the connection without a notice and without blocking (a
// client that does not read would not get one anyway); the reader then
// finishes and abandons the client's outstanding requests upstream.
func (c *clientConn) dropNow() {
	c.cancel()
	c.qmu.Lock()
	c.killed, c.q, c.qBytes = true, nil, 0
	c.qmu.Unlock()
	c.conn().Close()
}

// queueOverhead is counted per queued message on top of its bytes, so
// that many tiny messages are bounded too.
const queueOverhead = 64

// writer sends queued messages, coalesced into writes of up to 64 KiB,
// each under a write deadline.
func (c *clientConn) writer() {
	defer close(c.writerDone)
	var buf []byte
	flush := func() bool {
		if len(buf) == 0 {
			return true
		}
		c.wmu.Lock()
		defer c.wmu.Unlock()
		nc := c.conn()
		nc.SetWriteDeadline(time.Now().Add(c.opts.writeTimeout()))
		c.qmu.Lock()
		killed := c.killed
		c.qmu.Unlock()
		if killed {
			return false
		}
		_, err := nc.Write(buf)
		buf = buf[:0]
		if err != nil {
			nc.Close() // the reader sees it and finishes
			return false
		}
		return true
	}
	for {
		select {
		case <-c.qSignal:
		case <-c.done:
			return
		}
		c.qmu.Lock()
		batch := c.q
		c.q, c.qBytes = nil, 0
		c.qmu.Unlock()
		for _, b := range batch {
			if len(b) == 0 { // flushMarker
				if !flush() {
					<-c.done
					return
				}
				c.flushed <- struct{}{}
				continue
			}
			buf = append(buf, b...)
			if len(buf) >= 64<<10 && !flush() {
				<-c.done
				return
			}
		}
		if !flush() {
			<-c.done
			return
		}
		if cap(buf) > 256<<10 {
			buf = nil // do not keep a large buffer for an idle session
		}
	}
}

// queue queues a message for the client; false when the connection is
// ending. It never blocks: a client whose queue would exceed
// Options.MaxQueuedBytes is disconnected (dropNow), so neither the reader nor
// the demux readers of shared upstream connections ever wait on one client.
func (c *clientConn) queue(b []byte) bool {
	c.qmu.Lock()
	if c.killed {
		c.qmu.Unlock()
		return false
	}
	if c.qBytes+len(b)+queueOverhead > c.opts.maxQueued() {
		queued := c.qBytes
		c.qmu.Unlock()
		c.killOnce.Do(func() {
			c.log.Warn("ldap client does not read its results, disconnecting", "queued", queued)
			c.dropNow()
		})
		return false
	}
	c.q = append(c.q, b)
	c.qBytes += len(b) + queueOverhead
	c.qmu.Unlock()
	select {
	case c.qSignal <- struct{}{}:
	default:
	}
	return true
}

// reply answers request r with an LDAPResult of the matching type.
func (c *clientConn) reply(r *request, code int, diag string) {
	if t := responseTag(r.tag); t != 0 {
		c.queue(resultMessage(r.id, t, code, diag))
	}
}

// deliver passes an upstream response for o to the client, with the
// client's message ID (called by the demux reader).
func (c *clientConn) deliver(o *op, m *message, final bool) {
	if final {
		c.mu.Lock()
		if c.ops[o.clientID] == o {
			delete(c.ops, o.clientID)
		}
		c.mu.Unlock()
	}
	body := m.op
	if o.filter != nil && m.tag == tagSearchEntry {
		b, err := o.filter.apply(body)
		if err != nil {
			c.log.Warn("ldap: dropping undecodable entry from upstream", "err", err)
			return
		}
		body = b
	}
	var ctls [][]byte
	if m.controls != nil {
		raws, _, err := splitControls(m.controls)
		if err == nil {
			ctls = raws
		}
	}
	b := envelope(o.clientID, body, ctls...)
	if c.queue(b) {
		c.opts.metrics().RelayedBytes(policy.LDAP, frontend.DirToClient, len(b))
	}
}

// failOp answers o locally (upstream connection lost).
func (c *clientConn) failOp(o *op, code int, diag string) {
	c.mu.Lock()
	if c.ops[o.clientID] == o {
		delete(c.ops, o.clientID)
	}
	c.mu.Unlock()
	if o.respTag != 0 {
		c.queue(resultMessage(o.clientID, o.respTag, code, diag))
	}
}

// startTLS upgrades the connection after answering success in plaintext.
func (c *clientConn) startTLS(m *request) bool {
	c.mu.Lock()
	busy := len(c.ops) > 0
	c.mu.Unlock()
	switch {
	case c.tls:
		c.queue(extendedResponse(m.id, resultOperationsError, "TLS already established", oidStartTLS, nil))
		return true
	case c.opts.TLS == nil:
		c.queue(extendedResponse(m.id, resultProtocolError, "StartTLS not available", oidStartTLS, nil))
		return true
	case busy:
		c.queue(extendedResponse(m.id, resultOperationsError, "requests outstanding", oidStartTLS, nil))
		return true
	case c.br.Buffered() > 0:
		c.log.Warn("ldap: data after StartTLS request, closing")
		c.kill(resultProtocolError, "data after StartTLS request")
		return false
	}
	if !c.queue(extendedResponse(m.id, resultSuccess, "", oidStartTLS, nil)) || !c.queue(flushMarker) {
		return false
	}
	select {
	case <-c.flushed:
	case <-c.done:
		return false
	}
	tc := tls.Server(c.conn(), c.opts.TLS)
	tc.SetDeadline(time.Now().Add(c.opts.preauthTimeout()))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.log.Debug("ldap starttls handshake failed", "err", err)
		return false
	}
	tc.SetDeadline(time.Time{})
	c.ncMu.Lock()
	c.nc = tc
	c.ncMu.Unlock()
	c.br = bufio.NewReaderSize(tc, 16<<10)
	c.tls = true
	return true
}
