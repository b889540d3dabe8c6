package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- a recording upstream: speaks just enough SMTP and keeps every byte ----

type rawUpstream struct {
	t       testing.TB
	Addr    string
	xclient bool // advertise XCLIENT
	// dropMail, when set, makes the next MAIL close its connection
	// unanswered (an upstream connection that died while idle).
	dropMail atomic.Bool

	mu   sync.Mutex
	raw  bytes.Buffer // every byte Legate sent, all connections
	data [][]byte     // DATA bodies as received (stuffed, final dot included)
}

func startRawUpstream(t testing.TB, xclient bool) *rawUpstream {
	t.Helper()
	u := &rawUpstream{t: t, xclient: xclient}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Addr = ln.Addr().String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); u.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return u
}

func (u *rawUpstream) record(b []byte) {
	u.mu.Lock()
	u.raw.Write(b)
	u.mu.Unlock()
}

func (u *rawUpstream) wire() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.raw.String()
}

func (u *rawUpstream) bodies() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]byte(nil), u.data...)
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprint(c, "220 rec.test ESMTP\r\n")
	for {
		line, err := br.ReadBytes('\n')
		u.record(line)
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimRight(string(line), "\r\n")), " ")
		switch verb {
		case "EHLO":
			x := ""
			if u.xclient {
				x = "250-XCLIENT ADDR PORT HELO\r\n"
			}
			fmt.Fprintf(c, "250-rec.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250-SIZE 100000000\r\n%s250 AUTH PLAIN\r\n", x)
		case "XCLIENT":
			fmt.Fprint(c, "220 rec.test ESMTP\r\n")
		case "MAIL":
			if u.dropMail.Swap(false) {
				return
			}
			fmt.Fprint(c, "250 2.0.0 OK\r\n")
		case "AUTH":
			fmt.Fprint(c, "235 2.7.0 OK\r\n")
		case "DATA":
			fmt.Fprint(c, "354 go\r\n")
			var body []byte
			for !bytes.HasSuffix(body, []byte("\r\n.\r\n")) && !bytes.Equal(body, []byte(".\r\n")) {
				b, err := br.ReadBytes('\n')
				body = append(body, b...)
				if err != nil {
					u.record(body)
					return
				}
			}
			u.record(body)
			u.mu.Lock()
			u.data = append(u.data, body)
			u.mu.Unlock()
			fmt.Fprint(c, "250 2.0.0 Ok: queued as REC1\r\n")
		case "QUIT":
			fmt.Fprint(c, "221 2.0.0 Bye\r\n")
			return
		default:
			fmt.Fprint(c, "250 2.0.0 OK\r\n")
		}
	}
}

// newRawEnv is newEnv with the recording upstream.
func newRawEnv(t *testing.T, xclient bool, mod ...func(*Options)) (*env, *rawUpstream) {
	t.Helper()
	ru := startRawUpstream(t, xclient)
	e := newEnv(t, append([]func(*Options){func(o *Options) { o.Upstream.Address = ru.Addr }}, mod...)...)
	return e, ru
}

// TestQuotedLocalPartNoInjection (issue #13 item 7): a quoted local part
// holding "> NOTIFY=... ORCPT=..." reaches the upstream re-quoted, as one
// address, with no parameters of its own.
func TestQuotedLocalPartNoInjection(t *testing.T) {
	e, ru := newRawEnv(t, false)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	const evil = `"v@evil> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x"@example.com`
	rc.cmd("RCPT TO:<"+evil+">", 250, "")
	rc.cmd(`RCPT TO:<"plain"@example.com>`, 250, "")
	rc.cmd(`RCPT TO:<"a\"b\\c d"@example.com> NOTIFY=NEVER`, 250, "")
	rc.cmd("RCPT TO:<\"bad\x01\"@example.com>", 500, "") // control character
	rc.cmd("RCPT TO:<x@example.com> FOO=bar", 555, "5.5.4")
	rc.cmd("RCPT TO:<x@example.com> NOTIFY=SUCCESS NOTIFY=DELAY", 501, "5.5.4")
	rc.cmd("RCPT TO:<x@example.com> ORCPT=rfc822;a+0Db", 501, "5.5.4") // CR inside ORCPT
	rc.cmd("DATA", 354, "")
	rc.cmd("hi\r\n.", 250, "REC1")
	rc.cmd("QUIT", 221, "")
	var rcpts []string
	for _, l := range strings.Split(ru.wire(), "\r\n") {
		if strings.HasPrefix(l, "RCPT ") {
			rcpts = append(rcpts, l)
		}
	}
	want := []string{
		"RCPT TO:<" + evil + ">",
		"RCPT TO:<plain@example.com>",
		`RCPT TO:<"a\"b\\c d"@example.com> NOTIFY=NEVER`,
	}
	if fmt.Sprint(rcpts) != fmt.Sprint(want) {
		t.Fatalf("upstream RCPT lines:\ngot  %q\nwant %q", rcpts, want)
	}
}

// TestQuotedLocalPartFakeUpstream checks the same against go-smtp's
// parser, as an MTA would read it: one recipient, no DSN parameters.
func TestQuotedLocalPartFakeUpstream(t *testing.T) {
	e := newEnv(t)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd(`RCPT TO:<"v@evil> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x"@example.com>`, 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("hi\r\n.", 250, "")
	m := e.up.messages()
	if len(m) != 1 || len(m[0].To) != 1 {
		t.Fatalf("upstream messages: got %+v, want one with one recipient", m)
	}
	if o := m[0].RcptOpts; len(o) != 1 || len(o[0].Notify) != 0 || o[0].OriginalRecipient != "" {
		t.Errorf("upstream RCPT options: got %+v, want none", o)
	}
	if got, want := m[0].To[0], "v@evil> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@example.com"; got != want {
		t.Errorf("upstream recipient: got %q, want %q", got, want)
	}
}

// TestBareCRLFNormalised (issue #13 item 7): bare CR and bare LF in DATA
// reach the upstream as CRLF, and a dot after them is stuffed, so "x\r.\r\n"
// never ends the message early upstream.
func TestBareCRLFNormalised(t *testing.T) {
	e, ru := newRawEnv(t, false)
	rc := e.dialAuthed("alice")
	cases := []struct{ in, want string }{
		{"x\r.\r\nMAIL FROM:<evil@example.com>\r\nnext\r\n", "x\r\n..\r\nMAIL FROM:<evil@example.com>\r\nnext\r\n.\r\n"},
		{"a\n.\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"cr run\r\r\n..stuffed\r\n", "cr run\r\n\r\n..stuffed\r\n.\r\n"},
		{"lf\n.\r\nstill in\r\n", "lf\r\n..\r\nstill in\r\n.\r\n"},
	}
	for i, c := range cases {
		rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
		rc.cmd("RCPT TO:<x@example.net>", 250, "")
		rc.cmd("DATA", 354, "")
		_ = rc.conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(rc.conn, c.in+".\r\n")
		rc.expectFor(fmt.Sprintf("end of DATA %d", i), 250, "REC1")
		b := ru.bodies()
		if len(b) != i+1 || string(b[i]) != c.want {
			t.Fatalf("case %d %q: upstream got %q, want %q", i, c.in, b[len(b)-1], c.want)
		}
	}
	if w := ru.wire(); strings.Contains(w, "x\r.") || strings.Contains(w, "\n.\r\nMAIL FROM:<evil") {
		t.Errorf("upstream wire holds the bare CR or a smuggled command: %q", w)
	}
}

// TestXCLIENT (issue #17 item 6): the client's address and port go to an
// upstream that offers XCLIENT, before AUTH; not with NoClientAddress, and
// not to an upstream that does not offer it.
func TestXCLIENT(t *testing.T) {
	for _, c := range []struct {
		name    string
		offer   bool
		off     bool
		wantXCL bool
	}{{"offered", true, false, true}, {"switched off", true, true, false}, {"not offered", false, false, false}} {
		t.Run(c.name, func(t *testing.T) {
			e, ru := newRawEnv(t, c.offer, func(o *Options) { o.NoClientAddress = c.off })
			rc := e.dialAuthed("alice")
			_, port, _ := net.SplitHostPort(rc.conn.LocalAddr().String())
			rc.cmd("QUIT", 221, "")
			w := ru.wire()
			xcl := strings.Index(w, "XCLIENT ")
			if !c.wantXCL {
				if xcl >= 0 {
					t.Fatalf("upstream got XCLIENT: %q", w)
				}
				return
			}
			want := "XCLIENT ADDR=127.0.0.1 PORT=" + port + "\r\n"
			if !strings.Contains(w, want) {
				t.Fatalf("upstream wire: got %q, want it to contain %q", w, want)
			}
			if a := strings.Index(w, "AUTH "); a < xcl {
				t.Errorf("AUTH at %d before XCLIENT at %d", a, xcl)
			}
			if n := strings.Count(w[xcl:], "EHLO "); n != 1 {
				t.Errorf("EHLO after XCLIENT: got %d, want 1", n)
			}
		})
	}
}

// loopbackPlain lets the proxy's client log in without TLS, as
// policy.allow_plaintext_loopback does.
type loopbackPlain struct{ login.Authenticator }

func (a loopbackPlain) CredentialsAccepted(bool, netip.Addr) bool { return true }
func (a loopbackPlain) Login(ctx context.Context, req login.Request) login.Result {
	req.TLS = true
	return a.Authenticator.Login(ctx, req)
}

// TestPlaintextPipelinedData sends a large message over a plaintext
// session with the next transaction pipelined after the final dot: the
// message arrives intact, and the commands read past it are answered.
func TestPlaintextPipelinedData(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Auth = loopbackPlain{o.Auth} })
	rc := e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	rc.cmd("AUTH PLAIN "+plainIR("", "alice", e.secret["alice"]), 235, "")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	var b bytes.Buffer
	sum, n, _ := writeBody(&b, 300<<10, true)
	b.WriteString(".\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n")
	_ = rc.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.conn.Write(b.Bytes()); err != nil {
		t.Fatalf("write: %v", err)
	}
	rc.expectFor("end of DATA", 250, "queued as UPQ123")
	rc.expectFor("pipelined MAIL", 250, "")
	rc.expectFor("pipelined RCPT", 250, "")
	rc.expectFor("pipelined DATA", 354, "")
	rc.cmd("second\r\n..dot\r\n.", 250, "queued as UPQ123")
	rc.cmd("QUIT", 221, "")
	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("upstream messages: got %d, want 2", len(msgs))
	}
	if msgs[0].Len != n || msgs[0].SHA != sum {
		t.Errorf("first message: got %d bytes, sha %x; want %d bytes, sha %x", msgs[0].Len, msgs[0].SHA[:8], n, sum[:8])
	}
	if got := string(msgs[1].Data); got != "second\r\n.dot\r\n" || fmt.Sprint(msgs[1].To) != "[y@example.net]" {
		t.Errorf("second message: got %q to %v, want %q to [y@example.net]", got, msgs[1].To, "second\r\n.dot\r\n")
	}
}

// TestPlaintextLineTooLong: a DATA line over the limit ends the
// transaction and the connection with 500 5.4.0.
func TestPlaintextLineTooLong(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Auth = loopbackPlain{o.Auth}; o.MaxLineLength = 100 })
	rc := e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	rc.cmd("AUTH PLAIN "+plainIR("", "alice", e.secret["alice"]), 235, "")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	_ = rc.conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(rc.conn, "short\r\n")
	time.Sleep(50 * time.Millisecond) // the next line arrives in a read of its own
	fmt.Fprintf(rc.conn, "%s\r\n.\r\n", strings.Repeat("x", 150))
	rc.expectFor("long line", 500, "5.4.0")
	rc.expectClosed(5 * time.Second)
	if n := len(e.up.messages()); n != 0 {
		t.Errorf("upstream messages: got %d, want 0", n)
	}
}

// TestSTARTTLSInjection: commands pipelined after STARTTLS in plaintext
// are discarded, not run inside the TLS session (CVE-2011-0411's class).
func TestSTARTTLSInjection(t *testing.T) {
	e := newEnv(t)
	rc := e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	fmt.Fprint(rc.conn, "STARTTLS\r\nRSET\r\n")
	rc.expect(220, "")
	rc.startTLSAfterReply(e)
	// The injected RSET was discarded: the next reply is the NOOP's.
	rc.cmd("NOOP", 250, "2.0.0 OK")
	rc.cmd("MAIL FROM:<alice@example.com>", 502, "5.5.1") // EHLO again first
}

func (rc *rawClient) startTLSAfterReply(e *env) {
	rc.t.Helper()
	tc := tls.Client(rc.conn, e.certs.ClientTLS)
	if err := tc.Handshake(); err != nil {
		rc.t.Fatalf("tls handshake: %v", err)
	}
	rc.conn = tc
	rc.tp = textproto.NewConn(tc)
}

func TestEnvelopeParse(t *testing.T) {
	cases := []struct {
		in   string
		utf8 bool
		want string // canonical form; "" refused
	}{
		{"<alice@example.com>", false, "alice@example.com"},
		{"<\"alice\"@example.com>", false, "alice@example.com"},
		{`<"a b"@example.com>`, false, `"a b"@example.com`},
		{`<"a\"b"@example.com>`, false, `"a\"b"@example.com`},
		{"<@relay.example,@other.example:alice@example.com>", false, "alice@example.com"},
		{"<alice@[192.0.2.1]>", false, "alice@[192.0.2.1]"},
		{"<alice@[IPv6:2001:db8::1]>", false, "alice@[IPv6:2001:db8::1]"},
		{"<alice@[999.0.2.1]>", false, ""},
		{"<alice@example.com", false, ""},
		{"alice@example.com", false, ""},
		{"<alice>", false, ""},
		{"<.alice@example.com>", false, ""},
		{"<al..ice@example.com>", false, ""},
		{"<alice@exa_mple.com>", false, ""},
		{"<alice@-example.com>", false, ""},
		{"<\"unterminated@example.com>", false, ""},
		{"<\"a\"b@example.com>", false, ""},
		{"<" + strings.Repeat("a", 65) + "@example.com>", false, ""},
		{"<jöran@example.com>", false, ""},
		{"<jöran@exämple.com>", true, "jöran@exämple.com"},
	}
	for _, c := range cases {
		mb, _, rest, r := parsePath(c.in, c.utf8, false)
		got := ""
		if r == nil && rest == "" {
			got = mb.String()
		}
		if got != c.want {
			t.Errorf("parsePath(%q): got %q (%v), want %q", c.in, got, r, c.want)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	for _, s := range []string{
		`<"v@evil> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x"@example.com> NOTIFY=NEVER`,
		"<alice@example.com> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=a+2Bb",
		`<"a\"b\\c"@x.y> ORCPT=rfc822;a+2Bb@c`, "<> SMTPUTF8", `<x@y> ORCPT=utf-8;j\x{F6}ran@x`,
	} {
		f.Add(s)
	}
	ext := map[string]string{"DSN": "", "SIZE": "", "8BITMIME": ""}
	f.Fuzz(func(t *testing.T, arg string) {
		for _, utf8 := range []bool{false, true} {
			to, p, r := parseRcpt(arg, utf8)
			if r != nil {
				continue
			}
			line := rcptCommand(to, p, ext)
			// What goes upstream parses again to the same thing.
			rest, _ := cutFold(line, "RCPT TO:")
			to2, p2, r2 := parseRcpt(rest, utf8)
			if r2 != nil || to2 != to || fmt.Sprint(p2) != fmt.Sprint(p) {
				t.Fatalf("%q -> %q -> %v %v %v, want %v %v", arg, line, to2, p2, r2, to, p)
			}
			if strings.ContainsAny(line, "\r\n\x00") {
				t.Fatalf("%q -> %q holds a control character", arg, line)
			}
		}
		if from, null, p, r := parseMail(arg, 1<<20); r == nil {
			line := mailCommand(from, null, p, ext)
			rest, _ := cutFold(line, "MAIL FROM:")
			from2, null2, p2, r2 := parseMail(rest, 1<<20)
			if r2 != nil || from2 != from || null2 != null || p2 != p {
				t.Fatalf("%q -> %q -> %v %v, want %v %v", arg, line, from2, r2, from, p)
			}
		}
	})
}

// FuzzDotCopier feeds arbitrary DATA streams in arbitrary pieces: the
// output has CRLF line ends only, never an end of data before its own,
// and is the input itself when the input is well formed.
func FuzzDotCopier(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "x\r.\r\n.\r\n", "a\n.\nb\r\n.\r\n", "..\r\n.\r\n", ".\r\n", "\r\r\n.\r\n", ".a\r\n.\r\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		step := int(chunk)%7 + 1
		tc := newDotCopier(1000, 0)
		var out []byte
		buf := []byte(nil)
		res := feedMore
		pos := 0
		for res == feedMore && pos < len(in) {
			end := min(pos+step, len(in))
			buf = append(buf, in[pos:end]...)
			pos = end
			var k int
			k, out, res = tc.feed(buf, out)
			buf = append(buf[:0], buf[k:]...)
		}
		if res != feedEnd {
			return
		}
		out = append(out, ".\r\n"...)
		for i := 0; i < len(out); i++ {
			if out[i] == '\r' && (i+1 == len(out) || out[i+1] != '\n') || out[i] == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("%q -> %q: bare CR or LF at %d", in, out, i)
			}
		}
		if e := bytes.Index(out, []byte("\r\n.\r\n")); e >= 0 && e != len(out)-5 || len(out) > 3 && bytes.HasPrefix(out, []byte(".\r\n")) {
			t.Fatalf("%q -> %q: an early end of data", in, out)
		}
		consumed := in[:pos-len(buf)]
		if !bytes.ContainsAny(bytes.ReplaceAll(consumed, []byte("\r\n"), nil), "\r\n") && !bytes.HasPrefix(consumed, []byte(".")) &&
			!bytes.Contains(consumed, []byte("\r\n.")) && !bytes.Equal(out, consumed) {
			t.Fatalf("well-formed %q -> %q, want it unchanged", consumed, out)
		}
	})
}

// FuzzUpstreamReply parses arbitrary upstream replies: never a panic, and
// what is passed back to the client is one well-formed reply of the same
// code with no control characters.
func FuzzUpstreamReply(f *testing.F) {
	for _, s := range []string{"250 2.0.0 Ok\r\n", "250-a\r\n250-b\r\n250 c\r\n", "250-a\r\n550 b\r\n", "2\r\n", "999 x\r\n", "250 a\x00\x1b[31m\r\n", "354\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		u := &upClient{br: bufio.NewReaderSize(bytes.NewReader(in), upMaxReplyLine)}
		r, err := u.readReply()
		if err != nil {
			return
		}
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		r.writeTo(w)
		w.Flush()
		lines := strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n")
		for i, l := range lines {
			sep := byte('-')
			if i == len(lines)-1 {
				sep = ' '
			}
			if len(l) < 4 || l[:3] != fmt.Sprint(r.code) || l[3] != sep || strings.IndexFunc(l, isCtl) >= 0 {
				t.Fatalf("%q -> line %d %q", in, i, l)
			}
		}
	})
}

// TestForgedProxyHeaderRefused: a PROXY header as the first line (a peer
// not in listen.proxy_protocol.trusted, whose connection reaches the
// dialogue untouched) is answered 421 and the connection closed; nothing
// after it is read as a command.
func TestForgedProxyHeaderRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Auth = loopbackPlain{o.Auth} })
	rc := e.dialRaw()
	_ = rc.conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(rc.conn, "PROXY TCP4 192.0.2.66 10.0.0.1 4444 587\r\nEHLO client.test\r\n")
	rc.expectFor("forged PROXY header", 421, "4.7.0")
	rc.expectClosed(5 * time.Second)
	// Later, "PROXY ..." is only an unknown command.
	rc = e.dialRaw()
	rc.cmd("EHLO client.test", 250, "")
	rc.cmd("PROXY TCP4 192.0.2.66 10.0.0.1 4444 587", 500, "")
	rc.cmd("NOOP", 250, "")
}

// TestMailPipelinedWithFirstRcpt: an upstream offering PIPELINING gets no
// MAIL before the client's first RCPT, then MAIL and RCPT back to back,
// with the parameters re-encoded as before.
func TestMailPipelinedWithFirstRcpt(t *testing.T) {
	e, ru := newRawEnv(t, false)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com> SIZE=100 RET=HDRS", 250, "")
	if w := ru.wire(); strings.Contains(w, "MAIL") {
		t.Fatalf("MAIL went upstream before the first RCPT: %q", w)
	}
	rc.cmd("RCPT TO:<x@example.com> NOTIFY=NEVER", 250, "")
	rc.cmd("RCPT TO:<y@example.com>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("hi\r\n.", 250, "REC1")
	rc.cmd("QUIT", 221, "")
	want := "MAIL FROM:<alice@example.com> SIZE=100 RET=HDRS\r\nRCPT TO:<x@example.com> NOTIFY=NEVER\r\nRCPT TO:<y@example.com>\r\nDATA\r\n"
	if w := ru.wire(); !strings.Contains(w, want) || strings.Count(w, "MAIL") != 1 {
		t.Fatalf("upstream wire: got %q, want it to hold %q once", w, want)
	}
}

// TestPipelinedMailReconnects: an upstream connection that died while the
// session idled is found at the first RCPT (MAIL was answered locally);
// Legate reconnects once and sends MAIL and RCPT again, and the client
// never sees the loss.
func TestPipelinedMailReconnects(t *testing.T) {
	e, ru := newRawEnv(t, false)
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	ru.dropMail.Store(true)
	rc.cmd("RCPT TO:<x@example.com>", 250, "")
	rc.cmd("DATA", 354, "")
	rc.cmd("hi\r\n.", 250, "REC1")
	if w := ru.wire(); strings.Count(w, "MAIL FROM:<alice@example.com>\r\n") != 2 || strings.Count(w, "AUTH ") != 2 ||
		!strings.HasSuffix(w, "AUTH PLAIN YWxpY2UAbGVnYXRlAG1hc3Rlci1zZWNyZXQtcHc=\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nhi\r\n.\r\n") {
		t.Fatalf("upstream wire: got %q, want MAIL on the first connection, then MAIL and RCPT on a second logged-in one", w)
	}
	if b := ru.bodies(); len(b) != 1 {
		t.Fatalf("upstream bodies: got %d, want 1", len(b))
	}
}
