package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/upstream"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/connlimit"
	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/policy"
)

// Buffer sizes of a client connection.
const (
	clientReadBuf  = 16 << 10
	clientWriteBuf = 4 << 10
)

// conn is one client connection and its dialogue. Everything below mu and
// the atomics is touched only by the connection's goroutine.
type conn struct {
	srv         *Server
	opts        *Options
	raw         net.Conn
	ic          *idleConn
	ip          netip.Addr
	port        uint16
	implicitTLS bool
	log         *slog.Logger

	ctx    context.Context // cancelled by close and by the server's Close
	cancel context.CancelFunc

	authenticated atomic.Bool
	killed        atomic.Bool
	closeOnce     sync.Once

	// wmu guards nc, the writes to it (flushes of bw and Kill's farewell)
	// and waiting.
	wmu     sync.Mutex
	nc      net.Conn // ic, or TLS over it
	waiting bool     // blocked reading the next command: a farewell may be written

	br  *bufio.Reader
	bw  *bufio.Writer
	tls bool

	// Dialogue state.
	hello   string // EHLO/HELO argument; "" before it
	preauth int    // commands before authentication
	bad     int    // unrecognised commands

	user  *login.User
	apID  string
	upCfg *upstream.Config // the session's upstream (login.Result.Upstream)
	regID string
	unreg func()

	upMu sync.Mutex // guards up against Kill
	up   *upClient
	tx   *transaction // nil outside a transaction
	bdat *bdatState   // a BDAT transaction in progress
}

// transaction is the state of one MAIL ... DATA.
type transaction struct {
	utf8 bool // SMTPUTF8 was given
	// mail is the MAIL not sent upstream yet: with PIPELINING (RFC 2920)
	// it goes in one write with the first RCPT.
	mail     *pendingMail
	rcpts    int // recipients the upstream accepted
	attempts int // RCPT commands
}

func newConn(s *Server, opts *Options, raw net.Conn, implicitTLS bool) *conn {
	ctx, cancel := context.WithCancel(s.fe.Context())
	ap := connlimit.RemoteIP(raw)
	var port uint16
	if ta, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
		port = uint16(ta.Port)
	}
	return &conn{
		srv: s, opts: opts, raw: raw, ip: ap, port: port, implicitTLS: implicitTLS,
		log: opts.logger().With("proto", policy.SMTP, "ip", ap.String()),
		ctx: ctx, cancel: cancel,
	}
}

// Active reports whether the client has authenticated (frontend.Conn).
func (c *conn) Active() bool { return c.authenticated.Load() }

// Kill ends the connection from any goroutine (frontend.Conn): it says
// "421 4.3.2 reason" when the connection is waiting for a command, then
// closes the client and the upstream connection.
func (c *conn) Kill(reason string) {
	if !c.killed.Swap(true) && c.wmu.TryLock() {
		if c.waiting && c.nc != nil {
			c.ic.farewell()
			_, _ = c.nc.Write([]byte("421 4.3.2 " + cleanText(reason) + "\r\n"))
		}
		c.wmu.Unlock()
	}
	c.close()
}

// close ends the connection from any goroutine: the client connection is
// closed, which unblocks the connection's goroutine, and the upstream one
// dropped.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.raw.Close()
		c.upMu.Lock()
		if c.up != nil {
			c.up.abort()
		}
		c.upMu.Unlock()
	})
}

// Serve runs the connection to its end (frontend.Conn).
func (c *conn) Serve(context.Context) {
	defer c.close()
	o := c.opts
	if o.Limiter != nil {
		release, ok := o.Limiter.Acquire(c.ip)
		if !ok {
			c.log.Warn("connection refused: too many connections")
			if !c.implicitTLS {
				_ = c.raw.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = c.raw.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
			}
			return
		}
		defer release()
	}
	defer c.end()

	c.ic = newIdleConn(c.raw, time.Now().Add(frontend.Or(o.PreauthTimeout, DefaultPreauthTimeout)),
		frontend.Or(o.IdleTimeout, DefaultIdleTimeout), frontend.Or(o.WriteTimeout, DefaultWriteTimeout))
	var nc net.Conn = c.ic
	if c.implicitTLS {
		tc := tls.Server(c.ic, o.TLS)
		if err := tc.HandshakeContext(c.ctx); err != nil {
			c.log.Debug("tls handshake failed", "err", err)
			return
		}
		nc, c.tls = tc, true
	}
	c.setNC(nc)
	c.br = bufio.NewReaderSize(nc, clientReadBuf)
	c.bw = bufio.NewWriterSize(nc, clientWriteBuf)

	newReply(220, "", o.domain()+" ESMTP Legate").writeTo(c.bw)
	for first := true; ; first = false {
		line, err := c.readLine()
		if err != nil {
			c.readFailed(err)
			return
		}
		if first && strings.HasPrefix(line, "PROXY ") {
			// A PROXY header reaches the dialogue only from a peer that
			// is not in listen.proxy_protocol.trusted: refuse it plainly.
			c.log.Warn("PROXY header from a peer not in listen.proxy_protocol.trusted; closing")
			replyProxyRefused.writeTo(c.bw)
			c.lingerClose()
			return
		}
		r, quit := c.handle(line)
		if r != nil {
			r.writeTo(c.bw)
		}
		if quit {
			c.lingerClose()
			return
		}
	}
}

func (c *conn) setNC(nc net.Conn) {
	c.wmu.Lock()
	c.nc = nc
	c.wmu.Unlock()
}

// end releases what the session holds: the upstream connection (QUIT
// unless killed) and the registration.
func (c *conn) end() {
	if c.bdat != nil {
		c.endBdat() // the upstream is in the middle of DATA: drop it
	}
	c.closeUpstream(!c.killed.Load() && c.ctx.Err() == nil)
	if c.unreg != nil {
		c.unreg()
		c.unreg = nil
		c.log.Info("session ended", "user", c.user.Name, "session", c.regID)
	}
}

// replyProxyRefused answers a PROXY header from an untrusted peer.
var replyProxyRefused = newReply(421, "4.7.0", "PROXY header not accepted from this address")

// errLineTooLong is a line over Options.MaxLineLength.
var errLineTooLong = errors.New("smtp: line too long")

// readLine flushes the replies when no more input is buffered (PIPELINING,
// RFC 2920), then reads one command line without its CRLF.
func (c *conn) readLine() (string, error) {
	if c.br.Buffered() == 0 {
		if err := c.flushWaiting(); err != nil {
			return "", err
		}
	}
	b, err := c.br.ReadSlice('\n')
	c.wmu.Lock()
	c.waiting = false
	c.wmu.Unlock()
	if errors.Is(err, bufio.ErrBufferFull) || len(b) > frontend.Or(c.opts.MaxLineLength, DefaultMaxLineLength)+2 {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return string(b), nil
}

// flushWaiting writes the buffered replies and marks the connection as
// waiting for a command (Kill may then say goodbye).
func (c *conn) flushWaiting() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.waiting = true
	return c.bw.Flush()
}

// flush writes the buffered replies.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.bw.Flush()
}

// readFailed answers a failed command read where the client can still hear
// it.
func (c *conn) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.log.Warn("line too long")
		replyLineTooLong.writeTo(c.bw)
		c.lingerClose()
	case errors.As(err, &ne) && ne.Timeout() && !c.killed.Load():
		c.log.Info("timeout", "authenticated", c.authenticated.Load())
		c.ic.farewell()
		replyTimeout.writeTo(c.bw)
		_ = c.flush()
	}
}

// lingerClose writes what is buffered and closes the connection without
// losing that last reply: the client's unread input would otherwise make
// the close a reset that can discard it. Bounded to a second.
func (c *conn) lingerClose() {
	_ = c.flush()
	if tc, ok := c.raw.(*net.TCPConn); ok && !c.tls {
		_ = tc.CloseWrite()
		_ = tc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.CopyN(io.Discard, tc, 1<<20)
	}
	c.close()
}

// idleConn sets a deadline before every read and write of the client
// connection: before authentication the fixed pre-auth deadline, after it
// now+idle on every read, so that a client that keeps sending (a long,
// slow DATA) is never cut off while a silent one is. It sits under TLS, so
// STARTTLS and implicit TLS handshakes are bounded too.
type idleConn struct {
	net.Conn
	idle    time.Duration
	write   atomic.Int64 // time.Duration
	preauth atomic.Int64 // unix nanos of the pre-auth deadline; 0 after auth
}

func newIdleConn(c net.Conn, preauthDeadline time.Time, idle, write time.Duration) *idleConn {
	ic := &idleConn{Conn: c, idle: idle}
	ic.write.Store(int64(write))
	ic.preauth.Store(preauthDeadline.UnixNano())
	return ic
}

// authenticated switches from the pre-auth deadline to the idle timeout.
func (ic *idleConn) authenticated() { ic.preauth.Store(0) }

// farewell bounds the writes from now on to a second: the last words
// before closing.
func (ic *idleConn) farewell() { ic.write.Store(int64(time.Second)) }

func (ic *idleConn) Read(b []byte) (int, error) {
	d := time.Now().Add(ic.idle)
	if p := ic.preauth.Load(); p != 0 {
		d = time.Unix(0, p)
	}
	if err := ic.Conn.SetReadDeadline(d); err != nil {
		return 0, err
	}
	return ic.Conn.Read(b)
}

func (ic *idleConn) Write(b []byte) (int, error) {
	if err := ic.Conn.SetWriteDeadline(time.Now().Add(time.Duration(ic.write.Load()))); err != nil {
		return 0, err
	}
	return ic.Conn.Write(b)
}

// Deadlines are managed per read and write; outside requests are ignored.
func (ic *idleConn) SetDeadline(time.Time) error      { return nil }
func (ic *idleConn) SetReadDeadline(time.Time) error  { return nil }
func (ic *idleConn) SetWriteDeadline(time.Time) error { return nil }

// domain is the host name of the greeting.
func (o *Options) domain() string {
	if o.Domain != "" {
		return o.Domain
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

var _ frontend.Conn = (*conn)(nil)
