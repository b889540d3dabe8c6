package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// upstreamConn is a logged-in client connection to the upstream submission
// server.
type upstreamConn struct {
	raw    net.Conn
	dc     *deadlineConn
	client *gosmtp.Client
	// plain is set when the client writes its commands into dc unencrypted
	// or through implicit TLS below dc, but not after STARTTLS (then the
	// TLS layer is the client's own, above dc): DATA may then be written
	// into dc directly (relayRawData).
	plain bool
}

// abort drops the connection without a word: a DATA in progress never
// gets its final dot, so the upstream discards the message. Safe from any
// goroutine.
func (u *upstreamConn) abort() { u.raw.Close() }

// quit ends the connection politely, bounded by the I/O timeout.
func (u *upstreamConn) quit() {
	_ = u.client.Quit()
	u.raw.Close()
}

// dialUpstream connects to the upstream and logs in as user with the master
// credential (SASL PLAIN authzid=user, authcid=master; or the separator
// form user<sep>master).
func dialUpstream(ctx context.Context, cfg *upstream.Config, helo, user string) (*upstreamConn, error) {
	raw, err := cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: raw}
	dc.timeout.Store(int64(cfg.IOTimeoutOrDefault()))
	var c *gosmtp.Client
	if cfg.Mode == upstream.ModeSTARTTLS {
		c, err = gosmtp.NewClientStartTLS(dc, cfg.TLSClientConfig())
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("%w: starttls: %w", upstream.ErrUnavailable, err)
		}
	} else {
		c = gosmtp.NewClient(dc)
	}
	c.CommandTimeout = cfg.IOTimeoutOrDefault()
	if err := c.Hello(helo); err != nil {
		raw.Close()
		return nil, fmt.Errorf("%w: ehlo: %w", upstream.ErrUnavailable, err)
	}
	var a sasl.Client
	if cfg.Login == upstream.LoginSeparator {
		a = sasl.NewPlainClient("", user+cfg.SeparatorOrDefault()+cfg.MasterUser, cfg.MasterPassword)
	} else {
		a = sasl.NewPlainClient(user, cfg.MasterUser, cfg.MasterPassword)
	}
	if err := c.Auth(a); err != nil {
		raw.Close()
		return nil, fmt.Errorf("%w: master login as %s: %w", upstream.ErrUnavailable, user, err)
	}
	return &upstreamConn{raw: raw, dc: dc, client: c, plain: cfg.Mode != upstream.ModeSTARTTLS}, nil
}

// connectUpstream opens the upstream session for the logged-in user.
func (s *smtpSession) connectUpstream() error {
	o := s.c.opts
	m := o.metrics()
	if o.Upstream == nil {
		s.c.log.Error("no upstream configured", "user", s.user.Name)
		m.UpstreamError(policy.SMTP)
		return upstream.ErrUnavailable
	}
	start := time.Now()
	up, err := dialUpstream(s.c.ctx, o.Upstream, o.domain(), s.user.Name)
	if err != nil {
		if s.c.ctx.Err() == nil { // not merely killed while connecting
			m.UpstreamError(policy.SMTP)
		}
		s.c.log.Warn("upstream login failed", "user", s.user.Name, "err", err)
		return err
	}
	m.UpstreamConnect(policy.SMTP, time.Since(start))
	s.upMu.Lock()
	s.up = up
	s.upMu.Unlock()
	if s.c.ctx.Err() != nil { // killed while connecting
		up.abort()
		return s.c.ctx.Err()
	}
	return nil
}

// closeUpstream drops the upstream connection; polite sends QUIT first.
func (s *smtpSession) closeUpstream(polite bool) {
	s.upMu.Lock()
	up := s.up
	s.up = nil
	s.upMu.Unlock()
	s.inTx = false
	if up == nil {
		return
	}
	if polite && s.c.ctx.Err() == nil {
		up.quit()
	} else {
		up.abort()
	}
}

// resetUpstream aborts an open upstream transaction with RSET; when that
// fails the connection is dropped (a new one is made at the next MAIL).
func (s *smtpSession) resetUpstream() {
	if !s.inTx || s.up == nil {
		return
	}
	s.inTx = false
	if err := s.up.client.Reset(); err != nil {
		s.c.log.Warn("upstream RSET failed", "user", s.user.Name, "session", s.regID, "err", err)
		s.closeUpstream(false)
	}
}

// relayMail sends MAIL upstream, reconnecting once if the connection was
// lost since the last transaction.
func (s *smtpSession) relayMail(from string, opts *gosmtp.MailOptions) error {
	s.resetUpstream()
	fwd := gosmtp.MailOptions{}
	if opts != nil {
		fwd = *opts
		fwd.Auth = nil // RFC 4954 AUTH= is not the client's to assert upstream
	}
	for attempt := 0; ; attempt++ {
		if s.up == nil {
			if err := s.connectUpstream(); err != nil {
				return errUpstreamDown
			}
		}
		if fwd.UTF8 {
			if ok, _ := s.up.client.Extension("SMTPUTF8"); !ok {
				return errNoUTF8Upstream
			}
		}
		err := s.up.client.Mail(from, &fwd)
		if err == nil {
			s.inTx = true
			return nil
		}
		var se *gosmtp.SMTPError
		if errors.As(err, &se) || attempt > 0 {
			return s.upstreamErr(err, errUpstreamDown)
		}
		s.c.log.Info("upstream connection lost, reconnecting", "user", s.user.Name, "session", s.regID, "err", err)
		s.closeUpstream(false)
	}
}

func (s *smtpSession) relayRcpt(to string, opts *gosmtp.RcptOptions) error {
	if s.up == nil || !s.inTx {
		return errUpstreamLost
	}
	if err := s.up.client.Rcpt(to, opts); err != nil {
		return s.upstreamErr(err, errUpstreamLost)
	}
	return nil
}

// relayData streams the message upstream as it arrives. If the client's
// data ends before the final dot (disconnect, size limit, RSET during
// BDAT), the upstream connection is dropped without the dot, so the
// upstream never delivers a partial message.
func (s *smtpSession) relayData(r io.Reader) error {
	if s.up == nil || !s.inTx {
		return errUpstreamLost
	}
	up := s.up
	if br := clientBuffer(r); br != nil && up.plain {
		return s.relayRawData(br, up)
	}
	w, err := up.client.Data()
	if err != nil {
		return s.upstreamErr(err, errUpstreamLost)
	}
	if s.buf == nil {
		s.buf = make([]byte, 32<<10)
	}
	n, err := io.CopyBuffer(w, readerOnly{r}, s.buf)
	// Counted once per message (bytes handed to the upstream, before
	// dot-stuffing), also when the transaction is then aborted.
	s.c.opts.metrics().RelayedBytes(policy.SMTP, dirToUpstream, int(n))
	if err != nil {
		var re *clientReadError
		if errors.As(err, &re) {
			s.c.log.Info("client data ended early, upstream transaction aborted",
				"user", s.user.Name, "session", s.regID, "err", re.err)
			s.closeUpstream(false)
			if errors.Is(re.err, gosmtp.ErrTooLongLine) {
				return errLineTooLong
			}
			var se *gosmtp.SMTPError
			if errors.As(re.err, &se) {
				return se // e.g. 552 message too large
			}
			return errUpstreamLost
		}
		return s.upstreamErr(err, errUpstreamLost)
	}
	up.dc.timeout.Store(int64(orDur(s.c.opts.SubmissionTimeout, DefaultSubmissionTimeout)))
	resp, err := w.CloseWithResponse()
	up.dc.timeout.Store(int64(s.c.opts.Upstream.IOTimeoutOrDefault()))
	s.inTx = false
	if err != nil {
		return s.upstreamErr(err, errUpstreamLost)
	}
	// Pass the upstream's success text (queue id) back: go-smtp writes an
	// *SMTPError's code and text as the DATA reply whatever the code.
	code, msg := splitEnhanced(resp.StatusText)
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: code, Message: msg}
}

// readerOnly tags the client's read errors so that relayData can tell them
// from upstream write errors (io.CopyBuffer returns either).
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && err != io.EOF {
		err = &clientReadError{err}
	}
	return n, err
}

type clientReadError struct{ err error }

func (e *clientReadError) Error() string { return "client: " + e.err.Error() }
func (e *clientReadError) Unwrap() error { return e.err }

// splitEnhanced separates a leading enhanced status code ("2.0.0 Ok") from
// a reply text.
func splitEnhanced(text string) (gosmtp.EnhancedCode, string) {
	var a, b, c int
	var rest string
	if n, _ := fmt.Sscanf(text, "%d.%d.%d", &a, &b, &c); n == 3 && a == 2 {
		for i := 0; i < len(text); i++ {
			if text[i] == ' ' {
				rest = text[i+1:]
				return gosmtp.EnhancedCode{a, b, c}, rest
			}
		}
		return gosmtp.EnhancedCode{a, b, c}, "OK"
	}
	if text == "" {
		text = "OK"
	}
	return gosmtp.EnhancedCode{2, 0, 0}, text
}

// deadlineConn bounds every read and write to the upstream by timeout,
// whatever go-smtp's client does with deadlines (it clears them while a
// DATA body is written).
type deadlineConn struct {
	net.Conn
	timeout atomic.Int64 // time.Duration
	// deferred is written together with the next Write, in one system
	// call: the end of a message with the final dot that follows it.
	deferred []byte
}

// deferWrite has b written in front of the next Write; b must stay
// untouched until then.
func (d *deadlineConn) deferWrite(b []byte) { d.deferred = b }

func (d *deadlineConn) Read(b []byte) (int, error) {
	if err := d.Conn.SetReadDeadline(time.Now().Add(time.Duration(d.timeout.Load()))); err != nil {
		return 0, err
	}
	return d.Conn.Read(b)
}

func (d *deadlineConn) Write(b []byte) (int, error) {
	if err := d.Conn.SetWriteDeadline(time.Now().Add(time.Duration(d.timeout.Load()))); err != nil {
		return 0, err
	}
	if len(d.deferred) == 0 {
		return d.Conn.Write(b)
	}
	pre := len(d.deferred)
	bufs := net.Buffers{d.deferred, b}
	d.deferred = nil
	n, err := bufs.WriteTo(d.Conn) // writev on a TCP connection
	return int(max(n-int64(pre), 0)), err
}

func (d *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (d *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (d *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
