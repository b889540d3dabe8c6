package imap

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
	"time"

	"github.com/legate-proxy/legate/internal/upstream"
)

// maxUpstreamLine bounds a response line from the upstream during login.
const maxUpstreamLine = 64 << 10

// upstreamLogin is a logged-in upstream connection.
type upstreamLogin struct {
	conn net.Conn
	// buffered holds bytes the upstream sent after the tagged OK; they
	// belong to the client.
	buffered []byte
	// caps is the post-login capability list.
	caps string
	// cfg is the upstream logged in to (its I/O timeout).
	cfg *upstream.Config
}

// upClient speaks the client side of IMAP to the upstream during login.
type upClient struct {
	ctx  context.Context
	cfg  *upstream.Config
	conn net.Conn
	p    parser
	caps string // last capability list seen
	// pending is sent ahead of the next command (pipelined).
	pending string
}

// masterLogin dials the upstream, upgrades with STARTTLS if configured and
// logs in as user with the master credential. When origin is valid, an ID
// naming it (x-originating-ip and x-originating-port, which Dovecot honours
// from its login_trusted_networks) goes just ahead of the login. onConn is
// told about every connection in use so that a kill can close it. Errors
// wrap upstream.ErrUnavailable.
func masterLogin(ctx context.Context, cfg *upstream.Config, user string, origin netip.AddrPort, onConn func(net.Conn) error) (*upstreamLogin, error) {
	conn, err := cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	if err := onConn(conn); err != nil {
		return nil, err
	}
	u := &upClient{ctx: ctx, cfg: cfg, conn: conn}
	u.reset(conn)
	if err := u.greeting(); err != nil {
		return nil, fail("greeting", err)
	}
	if cfg.Mode == upstream.ModeSTARTTLS {
		if _, err := u.expectOK("L1", "L1 STARTTLS"); err != nil {
			return nil, fail("starttls", err)
		}
		if u.p.r.Buffered() > 0 {
			return nil, fail("starttls", errors.New("data after STARTTLS response"))
		}
		tc, err := cfg.Handshake(ctx, conn)
		if err != nil {
			return nil, err
		}
		conn = tc
		if err := onConn(conn); err != nil {
			return nil, err
		}
		u.reset(conn)
	}
	if origin.IsValid() {
		u.pending = originID(origin)
	}
	if err := u.login(user); err != nil {
		return nil, fail("master login", err)
	}
	if u.caps == "" {
		if _, err := u.expectOK("L3", "L3 CAPABILITY"); err != nil {
			return nil, fail("capability", err)
		}
		if u.caps == "" {
			return nil, fail("capability", errors.New("no capabilities"))
		}
	}
	ul := &upstreamLogin{conn: conn, caps: u.caps, cfg: cfg}
	if n := u.p.r.Buffered(); n > 0 {
		b, _ := u.p.r.Peek(n)
		ul.buffered = append([]byte(nil), b...)
	}
	_ = conn.SetDeadline(time.Time{})
	ok = true
	return ul, nil
}

// originID is the ID command that passes the client's address on. Its
// answer (an untagged ID and a tagged OK, or a refusal) is read and passed
// over while waiting for the login's; an upstream that does not trust
// Legate's address ignores the fields.
func originID(origin netip.AddrPort) string {
	ip := origin.Addr().Unmap().WithZone("")
	return `I1 ID ("x-originating-ip" "` + ip.String() + `" "x-originating-port" "` +
		strconv.Itoa(int(origin.Port())) + `")` + "\r\n"
}

func fail(step string, err error) error {
	if errors.Is(err, upstream.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: imap %s: %w", upstream.ErrUnavailable, step, err)
}

func (u *upClient) reset(conn net.Conn) {
	u.conn = conn
	u.p = parser{r: bufio.NewReaderSize(conn, 4096), maxLine: maxUpstreamLine}
}

// arm sets the deadline for the next exchange.
func (u *upClient) arm() error {
	if err := u.ctx.Err(); err != nil {
		return err
	}
	d := time.Now().Add(u.cfg.IOTimeoutOrDefault())
	if cd, ok := u.ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return u.conn.SetDeadline(d)
}

func (u *upClient) send(s string) error {
	if err := u.arm(); err != nil {
		return err
	}
	s, u.pending = u.pending+s, ""
	_, err := u.conn.Write([]byte(s))
	return err
}

func (u *upClient) readLine() (string, error) {
	if err := u.arm(); err != nil {
		return "", err
	}
	l, err := u.p.readLine()
	return string(l), err
}

// response is one parsed response line.
type response struct {
	tag, status, code, text string
}

func parseResponse(line string) response {
	var r response
	r.tag, line, _ = strings.Cut(line, " ")
	r.status, line, _ = strings.Cut(line, " ")
	r.status = strings.ToUpper(r.status)
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			r.code, line = line[1:i], strings.TrimPrefix(line[i+1:], " ")
		}
	}
	r.text = line
	return r
}

// noteCaps remembers a capability list from a response code or an
// untagged CAPABILITY response.
func (u *upClient) noteCaps(r response) {
	if name, rest, _ := strings.Cut(r.code, " "); strings.EqualFold(name, "CAPABILITY") {
		u.caps = rest
	}
	if r.tag == "*" && r.status == "CAPABILITY" {
		u.caps = r.text
	}
}

func (u *upClient) greeting() error {
	line, err := u.readLine()
	if err != nil {
		return err
	}
	r := parseResponse(line)
	if r.tag != "*" || r.status != "OK" {
		return fmt.Errorf("unexpected greeting %q", clean(line, 100))
	}
	u.noteCaps(r)
	return nil
}

// wait reads responses up to the tagged one and returns it; continuation
// requests are returned too when cont is set.
func (u *upClient) wait(tag string, cont bool) (response, error) {
	for {
		line, err := u.readLine()
		if err != nil {
			return response{}, err
		}
		if cont && strings.HasPrefix(line, "+") {
			return response{tag: "+"}, nil
		}
		r := parseResponse(line)
		if r.tag == "*" && r.status == "BYE" {
			return r, fmt.Errorf("upstream said BYE: %s", clean(r.text, 100))
		}
		u.noteCaps(r)
		if r.tag == tag {
			return r, nil
		}
	}
}

// expectOK sends a command line and waits for its tagged OK.
func (u *upClient) expectOK(tag, line string) (response, error) {
	if err := u.send(line + "\r\n"); err != nil {
		return response{}, err
	}
	return u.finish(tag)
}

func (u *upClient) finish(tag string) (response, error) {
	r, err := u.wait(tag, false)
	if err != nil {
		return r, err
	}
	if r.status != "OK" {
		// The upstream's text names no secret (we never echo ours).
		return r, fmt.Errorf("%s %s", r.status, clean(r.text, 100))
	}
	u.noteCaps(r)
	return r, nil
}

// login authenticates as user: SASL PLAIN with the master credential as
// authcid and user as authzid, a token (XOAUTH2 / OAUTHBEARER), or the
// LOGIN user*master form.
func (u *upClient) login(user string) error {
	cfg := u.cfg
	// Only capabilities seen from now on describe the logged-in session.
	pre := u.caps
	u.caps = ""
	if cfg.Login == upstream.LoginSeparator && cfg.OAuth == nil {
		return u.loginSeparator(user + cfg.SeparatorOrDefault() + cfg.MasterUser)
	}
	mech, raw, err := cfg.SASL(u.ctx, user)
	if err != nil {
		return err
	}
	ir := base64.StdEncoding.EncodeToString(raw)
	if hasCap(pre, "SASL-IR") {
		err = u.send("L2 AUTHENTICATE " + mech + " " + ir + "\r\n")
	} else {
		err = u.send("L2 AUTHENTICATE " + mech + "\r\n")
		if err == nil {
			var r response
			r, err = u.wait("L2", true)
			if err == nil && r.tag != "+" {
				return fmt.Errorf("AUTHENTICATE refused: %s %s", r.status, clean(r.text, 100))
			}
			if err == nil {
				err = u.send(ir + "\r\n")
			}
		}
	}
	if err != nil {
		return err
	}
	r, err := u.wait("L2", true)
	if err == nil && r.tag == "+" {
		// A token mechanism's failure comes as a challenge carrying the
		// error (RFC 7628 §3.2.2); an empty response ends the exchange.
		if err = u.send("\r\n"); err == nil {
			r, err = u.wait("L2", false)
		}
	}
	if err != nil {
		return err
	}
	if r.status != "OK" {
		reply := r.status + " " + clean(r.text, 100)
		if cfg.OAuth != nil {
			return cfg.TokenRefused(user, reply)
		}
		return errors.New(reply)
	}
	u.noteCaps(r)
	return nil
}

// loginSeparator sends LOGIN "user*master" "password", with literals for
// values a quoted string cannot carry.
func (u *upClient) loginSeparator(name string) error {
	line := "L2 LOGIN"
	for _, v := range []string{name, u.cfg.MasterPassword} {
		if quotable(v) {
			line += " " + quote(v)
			continue
		}
		if err := u.send(line + " {" + strconv.Itoa(len(v)) + "}\r\n"); err != nil {
			return err
		}
		r, err := u.wait("L2", true)
		if err != nil {
			return err
		}
		if r.tag != "+" {
			return fmt.Errorf("literal refused: %s %s", r.status, clean(r.text, 100))
		}
		line = v
	}
	_, err := u.expectOK("L2", line)
	return err
}

func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func hasCap(caps, c string) bool {
	for _, f := range strings.Fields(caps) {
		if strings.EqualFold(f, c) {
			return true
		}
	}
	return false
}
