package smtp

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/internal/connlimit"
	"github.com/legate-proxy/legate/policy"
)

// conn is one client connection. Its go-smtp sessions (a new one after
// STARTTLS) share it.
type conn struct {
	srv         *Server
	opts        *Options
	raw         net.Conn
	ic          *idleConn
	ip          netip.Addr
	implicitTLS bool
	log         *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	authenticated atomic.Bool
	preauthCmds   int // touched only by the connection's go-smtp goroutine

	closeOnce sync.Once
}

func newConn(s *Server, opts *Options, raw net.Conn, implicitTLS bool) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	ip := connlimit.RemoteIP(raw)
	return &conn{
		srv: s, opts: opts, raw: raw, ip: ip, implicitTLS: implicitTLS,
		log: opts.logger().With("proto", policy.SMTP, "ip", ip.String()),
		ctx: ctx, cancel: cancel,
	}
}

// close ends the connection from any goroutine: the client connection is
// closed, which unblocks go-smtp, which then logs the session out (closing
// the upstream).
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.raw.Close()
	})
}

// serve runs the connection to its end. It owns every goroutine it starts.
func (c *conn) serve() {
	defer c.close()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic serving connection", "panic", fmt.Sprint(r))
		}
	}()
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

	c.ic = newIdleConn(c.raw, time.Now().Add(orDur(o.PreauthTimeout, DefaultPreauthTimeout)),
		orDur(o.IdleTimeout, DefaultIdleTimeout), orDur(o.WriteTimeout, DefaultWriteTimeout))
	var nc net.Conn = c.ic
	if c.implicitTLS {
		nc = tls.Server(c.ic, o.TLS)
	}

	srv := gosmtp.NewServer(gosmtp.BackendFunc(c.newSession))
	srv.Domain = o.domain()
	srv.TLSConfig = o.TLS
	srv.MaxMessageBytes = orInt(o.MaxMessageBytes, DefaultMaxMessageBytes)
	srv.MaxRecipients = orInt(o.MaxRecipients, DefaultMaxRecipients)
	srv.MaxLineLength = orInt(o.MaxLineLength, DefaultMaxLineLength)
	// The credentials decision (policy.require_tls) is the login service's:
	// go-smtp must not refuse AUTH on its own with a non-standard code.
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	// Deadlines are idleConn's job: go-smtp's ReadTimeout is one absolute
	// deadline per command, which would cut a long DATA off.
	srv.ReadTimeout, srv.WriteTimeout = 0, 0
	srv.ErrorLog = errorLog{c.log}

	// go-smtp serves connections only through a listener: hand it this one
	// connection, then wait for its handler to return.
	_ = srv.Serve(&oneConnListener{conn: nc, addr: c.raw.LocalAddr()})
	_ = srv.Shutdown(context.Background())
}

// newSession is go-smtp's Backend: called at the first EHLO/HELO, and again
// after STARTTLS.
func (c *conn) newSession(sc *gosmtp.Conn) (gosmtp.Session, error) {
	if err := c.countPreauth(sc); err != nil {
		return nil, err
	}
	return &smtpSession{c: c, sc: sc}, nil
}

// countPreauth counts a command before authentication; over the limit it
// answers 421 itself and closes the connection.
func (c *conn) countPreauth(sc *gosmtp.Conn) error {
	if c.authenticated.Load() {
		return nil
	}
	c.preauthCmds++
	if c.preauthCmds <= orInt(c.opts.MaxPreauthCommands, DefaultMaxPreauthCommands) {
		return nil
	}
	c.log.Warn("too many commands before authentication", "count", c.preauthCmds)
	nc := sc.Conn()
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write([]byte("421 4.7.0 Too many commands without authentication, closing connection\r\n"))
	c.close()
	return errTooManyCommands
}

var errTooManyCommands = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0},
	Message: "Too many commands without authentication"}

// isTLS reports whether the client connection is encrypted.
func (c *conn) isTLS(sc *gosmtp.Conn) bool {
	_, ok := sc.TLSConnectionState()
	return ok
}

// oneConnListener yields one connection, then reports closed.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn
	addr net.Addr
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil, net.ErrClosed
	}
	c := l.conn
	l.conn = nil
	return c, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.addr }

// errorLog routes go-smtp's internal error messages to slog.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.log.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.log.Warn("smtp: " + fmt.Sprint(v...)) }

// idleConn sets a deadline before every read and write of the client
// connection: before authentication the fixed pre-auth deadline, after it
// now+idle on every read, so that a client that keeps sending (a long,
// slow DATA) is never cut off while a silent one is. It sits under TLS, so
// STARTTLS and implicit TLS handshakes are bounded too.
type idleConn struct {
	net.Conn
	idle, write time.Duration
	preauth     atomic.Int64 // unix nanos of the pre-auth deadline; 0 after auth

	// The DATA fast path on a plaintext connection reads the connection
	// itself (rawdata.go): what it read past the message is handed back
	// here, and read before the connection; a line it found too long makes
	// every later read fail, as go-smtp's own line counter does. Touched
	// only by the connection's go-smtp goroutine.
	pending []byte
	err     error
}

// unread puts b, copied, in front of what is still to be read.
func (ic *idleConn) unread(b []byte) {
	ic.pending = append(append(make([]byte, 0, len(b)+len(ic.pending)), b...), ic.pending...)
}

// fail makes every later read return err.
func (ic *idleConn) fail(err error) { ic.err = err }

func newIdleConn(c net.Conn, preauthDeadline time.Time, idle, write time.Duration) *idleConn {
	ic := &idleConn{Conn: c, idle: idle, write: write}
	ic.preauth.Store(preauthDeadline.UnixNano())
	return ic
}

// authenticated switches from the pre-auth deadline to the idle timeout.
func (ic *idleConn) authenticated() { ic.preauth.Store(0) }

func (ic *idleConn) Read(b []byte) (int, error) {
	if ic.err != nil {
		return 0, ic.err
	}
	if len(ic.pending) > 0 {
		n := copy(b, ic.pending)
		ic.pending = ic.pending[n:]
		return n, nil
	}
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
	if err := ic.Conn.SetWriteDeadline(time.Now().Add(ic.write)); err != nil {
		return 0, err
	}
	return ic.Conn.Write(b)
}

// Deadlines are managed per read and write; outside requests are ignored.
func (ic *idleConn) SetDeadline(time.Time) error      { return nil }
func (ic *idleConn) SetReadDeadline(time.Time) error  { return nil }
func (ic *idleConn) SetWriteDeadline(time.Time) error { return nil }
