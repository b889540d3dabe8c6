package smtp

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
)

// upClient is a logged-in connection to the upstream submission server,
// spoken by this package's own small client (RFC 5321, 3207, 4954 and
// Postfix's XCLIENT): commands go out as Legate encoded them, replies are
// decoded strictly and re-encoded for the client.
type upClient struct {
	raw net.Conn      // the TCP (or implicit TLS) connection, closed by abort
	dc  *deadlineConn // bounds every read and write
	nc  net.Conn      // dc, or TLS over it after STARTTLS
	br  *bufio.Reader
	bw  *bufio.Writer
	ext map[string]string // EHLO keywords (upper case) and their parameters
	cfg *upstream.Config  // the upstream dialed (its I/O timeout)

	xclient        bool   // the client's address was passed
	xclientRefused *reply // the upstream refused XCLIENT
}

// Bounds of upstream replies.
const (
	upMaxReplyLine  = 2048
	upMaxReplyLines = 100
)

// errUpstreamProtocol is a reply that does not parse.
var errUpstreamProtocol = errors.New("smtp: upstream: malformed reply")

// abort drops the connection without a word: a DATA in progress never
// gets its final dot, so the upstream discards the message. Safe from any
// goroutine.
func (u *upClient) abort() { u.raw.Close() }

// quit ends the connection politely, bounded by the I/O timeout.
func (u *upClient) quit() {
	_, _ = u.cmd("QUIT")
	u.raw.Close()
}

// cmd sends one command line and reads the reply. An error means the
// connection failed (I/O, or a reply that does not parse); an upstream
// refusal is a reply with a 4xx or 5xx code.
func (u *upClient) cmd(line string) (*reply, error) {
	if err := u.send(line); err != nil {
		return nil, err
	}
	return u.readReply()
}

// mailRcpt sends MAIL and RCPT and reads their replies: in one write
// when the upstream offers PIPELINING (RFC 2920), else one after the
// other, RCPT only after a 250 to MAIL. mr is nil when MAIL got no reply;
// rr is nil when RCPT got none.
func (u *upClient) mailRcpt(mail, rcpt string) (mr, rr *reply, err error) {
	if _, ok := u.ext["PIPELINING"]; !ok {
		if mr, err = u.cmd(mail); err != nil || mr.code != 250 {
			return mr, nil, err
		}
		rr, err = u.cmd(rcpt)
		return mr, rr, err
	}
	u.bw.WriteString(mail)
	u.bw.WriteString("\r\n")
	if err := u.send(rcpt); err != nil {
		return nil, nil, err
	}
	if mr, err = u.readReply(); err != nil {
		return nil, nil, err
	}
	rr, err = u.readReply()
	return mr, rr, err
}

func (u *upClient) send(line string) error {
	u.bw.WriteString(line)
	u.bw.WriteString("\r\n")
	return u.bw.Flush()
}

// readReply reads and decodes one reply (RFC 5321 §4.2): every line
// "ddd-text" but the last "ddd text" (or "ddd"), the same code throughout.
// Text is cleaned of control characters.
func (u *upClient) readReply() (*reply, error) {
	r := &reply{}
	for {
		b, err := u.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errUpstreamProtocol
			}
			return nil, err
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return nil, errUpstreamProtocol
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || r.code != 0 && code != r.code {
			return nil, errUpstreamProtocol
		}
		r.code = code
		text := ""
		if len(line) > 4 {
			text = cleanText(line[4:])
		}
		r.lines = append(r.lines, text)
		if len(r.lines) > upMaxReplyLines {
			return nil, errUpstreamProtocol
		}
		if len(line) == 3 || line[3] == ' ' {
			return r, nil
		}
	}
}

// expect runs a command and wants a reply with the given code.
func (u *upClient) expect(line string, code int, what string) error {
	r, err := u.cmd(line)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if r.code != code {
		return fmt.Errorf("%s: %w", what, r)
	}
	return nil
}

// hello sends EHLO and records the extensions.
func (u *upClient) hello(name string) error {
	r, err := u.cmd("EHLO " + name)
	if err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if r.code != 250 {
		return fmt.Errorf("ehlo: %w", r)
	}
	u.ext = make(map[string]string, len(r.lines))
	for _, l := range r.lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		u.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// dialUpstream connects to the upstream, passes the client's address with
// XCLIENT when client is valid and the upstream offers it, and logs in as
// user with the master credential (SASL PLAIN authzid=user,
// authcid=master; or the separator form user<sep>master).
func dialUpstream(ctx context.Context, cfg *upstream.Config, helo, user string, client netip.AddrPort) (*upClient, error) {
	raw, err := cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: raw}
	dc.timeout.Store(int64(cfg.IOTimeoutOrDefault()))
	u := &upClient{cfg: cfg, raw: raw, dc: dc, nc: dc, br: bufio.NewReaderSize(dc, upMaxReplyLine), bw: bufio.NewWriterSize(dc, 1024)}
	// Killed while logging in: the connection goes with the context.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	fail := func(err error) (*upClient, error) {
		raw.Close()
		return nil, fmt.Errorf("%w: %w", upstream.ErrUnavailable, err)
	}
	greet, err := u.readReply()
	if err != nil || greet.code != 220 {
		if err == nil {
			err = greet
		}
		return fail(fmt.Errorf("greeting: %w", err))
	}
	if err := u.hello(helo); err != nil {
		return fail(err)
	}
	if cfg.Mode == upstream.ModeSTARTTLS {
		if err := u.expect("STARTTLS", 220, "starttls"); err != nil {
			return fail(err)
		}
		tc, err := cfg.Handshake(ctx, dc)
		if err != nil {
			return fail(err)
		}
		u.nc = tc
		u.br.Reset(tc)
		u.bw.Reset(tc)
		if err := u.hello(helo); err != nil {
			return fail(err)
		}
	}
	if attrs, ok := u.ext["XCLIENT"]; ok && client.IsValid() {
		if line := xclientCommand(attrs, client); line != "" {
			r, err := u.cmd(line)
			if err != nil {
				return fail(fmt.Errorf("xclient: %w", err))
			}
			if !r.positive() {
				// Not trusted: the session goes on without it.
				u.xclientRefused = r
			} else if err := u.hello(helo); err != nil {
				// The upstream started the session over (Postfix and
				// Dovecot answer with a new greeting): EHLO again.
				return fail(err)
			} else {
				u.xclient = true
			}
		}
	}
	mech, ir := upstream.MechPlain, []byte(nil)
	if cfg.Login == upstream.LoginSeparator && cfg.OAuth == nil {
		ir = []byte("\x00" + user + cfg.SeparatorOrDefault() + cfg.MasterUser + "\x00" + cfg.MasterPassword)
	} else if mech, ir, err = cfg.SASL(ctx, user); err != nil {
		raw.Close()
		return nil, err
	}
	r, err := u.cmd("AUTH " + mech + " " + base64.StdEncoding.EncodeToString(ir))
	if err == nil && r.code == 334 {
		// A token mechanism's failure comes as a challenge carrying the
		// error (RFC 7628 §3.2.2); an empty response ends the exchange.
		r, err = u.cmd("")
	}
	if err != nil {
		return fail(fmt.Errorf("upstream login as %s: %w", user, err))
	}
	if r.code != 235 {
		if cfg.OAuth != nil {
			raw.Close()
			return nil, cfg.TokenRefused(user, r.Error())
		}
		return fail(fmt.Errorf("master login as %s: %w", user, r))
	}
	return u, nil
}

// xclientCommand is "XCLIENT ADDR=... PORT=..." with the attributes the
// upstream lists (all of them when it lists none), or "" when it takes
// neither.
func xclientCommand(attrs string, client netip.AddrPort) string {
	offered := func(a string) bool {
		if strings.TrimSpace(attrs) == "" {
			return true
		}
		for _, f := range strings.Fields(attrs) {
			if strings.EqualFold(f, a) {
				return true
			}
		}
		return false
	}
	var parts []string
	if offered("ADDR") {
		a := client.Addr().Unmap()
		v := a.String()
		if a.Is6() {
			v = "IPv6:" + v
		}
		parts = append(parts, "ADDR="+xtextEncode(v))
	}
	if offered("PORT") && client.Port() != 0 {
		parts = append(parts, "PORT="+strconv.Itoa(int(client.Port())))
	}
	if len(parts) == 0 {
		return ""
	}
	return "XCLIENT " + strings.Join(parts, " ")
}

// deadlineConn bounds every read and write to the upstream by timeout.
type deadlineConn struct {
	net.Conn
	timeout atomic.Int64 // time.Duration
}

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
	return d.Conn.Write(b)
}

func (d *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (d *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (d *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
