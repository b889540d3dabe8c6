package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
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
)

// Connection states.
const (
	statePreauth = iota
	stateRelay
)

// conn is one client connection: the pre-auth dialogue, then the relay.
// Once logged in, the connection goroutine hands the session to two fresh
// relay goroutines and ends, so that an idle session holds only small
// stacks and the few fields below (see relay.go).
type conn struct {
	// preauth is the state of the dialogue before login, owned by the
	// connection goroutine and dropped (nil) when the session is handed to
	// the relay goroutines.
	*preauth

	srv         *Server
	opts        *Options
	ip          netip.Addr
	port        uint16 // the client's source port; 0 when unknown
	implicitTLS bool
	// handedOff is set by the connection goroutine once the relay
	// goroutines own the connection (they then end it).
	handedOff bool
	client    string // from ID: "name/version"
	release   func() // connection-limit slot; nil when unlimited

	mu     sync.Mutex         // guards nc, up, state, cancel
	nc     net.Conn           // client connection (a *tls.Conn after STARTTLS)
	up     net.Conn           // upstream connection, once dialled
	cancel context.CancelFunc // cancels preauth.ctx; nil once relaying
	state  int
	killed atomic.Bool

	// wsem serialises writes to the client (a channel, so that a farewell
	// can give up waiting).
	wsem chan struct{}
}

// preauth is what a connection needs only before login.
type preauth struct {
	ctx context.Context // cancelled by kill, and once relaying
	// base is the connection's logger (proto, ip), derived once; log is
	// base, or base with the client's name once an ID named it (derived
	// once per pre-auth state, never per command).
	base, log *slog.Logger
	// deadline ends the pre-auth dialogue (limits.preauth_timeout).
	deadline time.Time
	isTLS    bool
	br       *bufio.Reader
	p        parser
	// bad counts bad input of every kind; idSeen is set by the first ID.
	// Both, and the client's name, start afresh after STARTTLS.
	bad    int
	idSeen bool
}

func (s *Server) newConn(nc net.Conn, implicitTLS bool) *conn {
	o := s.opts.Load()
	c := &conn{srv: s, opts: o, nc: nc, implicitTLS: implicitTLS, ip: connlimit.RemoteIP(nc),
		wsem: make(chan struct{}, 1), preauth: &preauth{}}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		c.port = ap.Port()
	}
	c.base = o.logger().With("proto", "imap", "ip", c.ip.String())
	c.log = c.base
	c.ctx, c.cancel = context.WithCancel(s.fe.Context())
	return c
}

// Serve runs the connection: the pre-auth dialogue, then (once logged in)
// it hands the session to the relay goroutines and returns. Its context is
// the one newConn derived from the frame's root context. A panic is the
// frame's to log.
func (c *conn) Serve(context.Context) {
	defer func() {
		if !c.handedOff {
			c.end()
		}
	}()
	if lim := c.opts.Limiter; lim != nil {
		release, ok := lim.Acquire(c.ip)
		if !ok {
			c.log.Warn("connection refused: limit reached")
			if !c.implicitTLS { // no plaintext BYE into a TLS handshake
				c.farewell("Too many connections, try later")
			}
			return
		}
		c.release = release
	}
	c.deadline = time.Now().Add(c.opts.preauthTimeout())
	_ = c.nc.SetDeadline(c.deadline)
	if c.implicitTLS {
		if c.opts.TLS == nil {
			c.log.Error("implicit-TLS connection without a TLS config")
			return
		}
		tc := tls.Server(c.nc, c.opts.TLS)
		if err := tc.HandshakeContext(c.ctx); err != nil {
			c.log.Debug("tls handshake failed", "err", err)
			return
		}
		c.setClient(tc)
		c.isTLS = true
	}
	c.br = bufio.NewReaderSize(c.nc, 4096)
	c.p = parser{r: c.br, maxLine: c.opts.maxLine(), maxLiteral: c.opts.maxLiteral(), maxIDLine: maxIDLine,
		cont: func() error { return c.writeLine("+ Ready for literal") }}
	if c.writeLine("* OK [CAPABILITY "+c.capabilities()+"] Legate ready") != nil {
		return
	}
	for first := true; ; first = false {
		cmd, err := c.p.readCommand()
		if first && err == nil && isProxyHeader(cmd) {
			// A PROXY header reaches the dialogue only from a peer that
			// is not a trusted balancer: a forged client address.
			c.log.Warn("PROXY header from a peer not in listen.proxy_protocol.trusted; closing")
			c.farewell("PROXY header not accepted from this address")
			return
		}
		if err != nil {
			if !c.readError(err) {
				return
			}
		} else if !c.handle(cmd) {
			return
		}
		// Every kind of bad input counts, syntax errors included.
		if c.bad >= c.opts.maxBad() {
			c.log.Info("too many bad commands before login")
			c.farewell("Too many invalid commands")
			return
		}
	}
}

// isProxyHeader reports whether a first command is a PROXY v1 header
// ("PROXY TCP4 ...").
func isProxyHeader(cmd *command) bool {
	return cmd.tag == "PROXY" && (cmd.name == "TCP4" || cmd.name == "TCP6" || cmd.name == "UNKNOWN")
}

// readError answers a parse error and reports whether to go on.
func (c *conn) readError(err error) bool {
	var lit *literalError
	var syn *syntaxError
	switch {
	case c.killed.Load():
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Info("pre-login timeout")
		c.farewell("Autologout; pre-login timeout")
		return false
	case errors.Is(err, errLineTooLong):
		c.log.Info("line too long before login")
		c.farewell("Line too long")
		return false
	case errors.As(err, &lit):
		if !lit.Sync {
			c.log.Info("non-synchronizing literal too big before login", "size", lit.Size)
			c.farewell("Literal too big")
			return false
		}
		c.bad++
		return c.writeLine(tagOr(lit.Tag)+" BAD Literal too big") == nil
	case errors.As(err, &syn):
		c.bad++
		return c.writeLine(tagOr(syn.Tag)+" BAD "+syn.Msg) == nil
	}
	if !errors.Is(err, io.EOF) {
		c.log.Debug("read failed", "err", err)
	}
	return false
}

func tagOr(tag string) string {
	if tag == "" {
		return "*"
	}
	return tag
}

// handle runs one pre-auth command and reports whether to go on.
func (c *conn) handle(cmd *command) bool {
	switch cmd.name {
	case "CAPABILITY":
		if len(cmd.args) != 0 {
			return c.badCommand(cmd.tag, "CAPABILITY takes no arguments")
		}
		return c.writeLines("* CAPABILITY "+c.capabilities(), cmd.tag+" OK CAPABILITY completed")
	case "NOOP":
		return c.writeLine(cmd.tag+" OK NOOP completed") == nil
	case "LOGOUT":
		_ = c.writeLines("* BYE Logging out", cmd.tag+" OK LOGOUT completed")
		return false
	case "ID":
		return c.id(cmd)
	case "STARTTLS":
		return c.startTLS(cmd)
	case "LOGIN":
		if len(cmd.args) != 2 {
			return c.badCommand(cmd.tag, "LOGIN takes a user name and a password")
		}
		user, ok1 := cmd.args[0].astring()
		pass, ok2 := cmd.args[1].astring()
		if !ok1 || !ok2 {
			return c.badCommand(cmd.tag, "LOGIN takes a user name and a password")
		}
		return c.login(cmd.tag, user, pass)
	case "AUTHENTICATE":
		return c.authenticate(cmd)
	}
	return c.badCommand(cmd.tag, "Command not valid before login")
}

// badCommand answers BAD and counts it.
func (c *conn) badCommand(tag, msg string) bool {
	c.bad++
	return c.writeLine(tag+" BAD "+msg) == nil
}

// capabilities lists what is offered before login.
func (c *conn) capabilities() string {
	caps := "IMAP4rev1 LITERAL+ SASL-IR ID"
	if !c.isTLS && c.opts.TLS != nil {
		caps += " STARTTLS"
	}
	if c.credentialsAccepted() {
		caps += " AUTH=PLAIN"
	} else {
		caps += " LOGINDISABLED"
	}
	return caps
}

func (c *conn) credentialsAccepted() bool {
	return c.opts.Auth == nil || c.opts.Auth.CredentialsAccepted(c.isTLS, c.ip)
}

// id answers RFC 2971 ID and keeps the client's name and version from
// the first ID of the pre-auth state. Later IDs are answered the same way
// but ignored: the client's name is set once, and the work per command
// stays constant.
func (c *conn) id(cmd *command) bool {
	fields, ok := idFields(cmd.args)
	if !ok {
		return c.badCommand(cmd.tag, "Invalid ID arguments")
	}
	if !c.idSeen {
		c.idSeen = true
		if name := clean(fields["name"], 64); name != "" {
			c.client = name
			if v := clean(fields["version"], 32); v != "" {
				c.client += "/" + v
			}
			c.log = c.base.With("client", c.client)
		}
	}
	return c.writeLines(`* ID ("name" "Legate")`, cmd.tag+" OK ID completed")
}

// RFC 2971 §3.3 maxima of an ID command, which Legate accepts.
const (
	idMaxPairs = 30
	idMaxField = 30
	idMaxValue = 1024
)

// idFields parses NIL or a parenthesised list of field/value pairs.
func idFields(args []token) (map[string]string, bool) {
	if len(args) == 1 && args[0].kind == tokAtom && strings.EqualFold(args[0].val, "NIL") {
		return nil, true
	}
	if len(args) < 2 || args[0].kind != tokLParen || args[len(args)-1].kind != tokRParen {
		return nil, false
	}
	inner := args[1 : len(args)-1]
	if len(inner)%2 != 0 || len(inner) > 2*idMaxPairs {
		return nil, false
	}
	fields := make(map[string]string)
	for i := 0; i < len(inner); i += 2 {
		k, v := inner[i], inner[i+1]
		if k.kind != tokString || (v.kind != tokString && !(v.kind == tokAtom && strings.EqualFold(v.val, "NIL"))) {
			return nil, false
		}
		if len(k.val) > idMaxField || len(v.val) > idMaxValue {
			return nil, false
		}
		if v.kind == tokString {
			fields[strings.ToLower(k.val)] = v.val
		}
	}
	return fields, true
}

// clean keeps printable ASCII, at most n bytes.
func clean(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if s[i] >= 0x20 && s[i] < 0x7f {
			b.WriteByte(s[i])
		}
	}
	return strings.TrimSpace(b.String())
}

// startTLS upgrades the client connection.
func (c *conn) startTLS(cmd *command) bool {
	if c.isTLS || c.opts.TLS == nil || len(cmd.args) != 0 {
		return c.badCommand(cmd.tag, "STARTTLS not available")
	}
	if c.writeLine(cmd.tag+" OK Begin TLS negotiation now") != nil {
		return false
	}
	if c.br.Buffered() > 0 {
		// Plaintext sent after STARTTLS could be injected by a
		// man in the middle; refuse it (CVE-2011-0411 class).
		c.log.Warn("data pipelined after STARTTLS; closing")
		return false
	}
	tc := tls.Server(c.nc, c.opts.TLS)
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.log.Debug("starttls handshake failed", "err", err)
		return false
	}
	c.setClient(tc)
	c.isTLS = true
	c.br.Reset(tc)
	// A fresh pre-auth state (RFC 9051 §6.2.1): nothing said in
	// plaintext, where a man in the middle could have written it,
	// outlives the handshake. The pre-auth deadline stays.
	c.client = ""
	c.idSeen = false
	c.bad = 0
	c.log = c.base
	return true
}

func (c *conn) setClient(nc net.Conn) {
	c.mu.Lock()
	c.nc = nc
	c.mu.Unlock()
}

func (c *conn) clientConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc
}

// writeLine writes one response line (CRLF added).
func (c *conn) writeLine(s string) error { return c.write(s + "\r\n") }

func (c *conn) writeLines(lines ...string) bool {
	return c.write(strings.Join(lines, "\r\n")+"\r\n") == nil
}

func (c *conn) write(s string) error {
	c.wsem <- struct{}{}
	defer func() { <-c.wsem }()
	_, err := io.WriteString(c.clientConn(), s)
	if err != nil {
		c.log.Debug("write failed", "err", err)
	}
	return err
}
