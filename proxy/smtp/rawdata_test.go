package smtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/internal/auth"
)

// The DATA fast path is checked against the old path run by go-smtp
// itself: a go-smtp server reads a scripted client stream, and its
// session's Data either reads go-smtp's reader and dot-stuffs the result
// with net/textproto's DotWriter (the old relay), or runs copyData on the
// buffered reader behind it (the new one). Both must send the same bytes
// upstream, fail the same way, and leave go-smtp reading the same
// commands after the message.

// scriptConn is a client connection that sends script, at most chunk
// bytes per read, and ignores what the server writes.
type scriptConn struct {
	r     *bytes.Reader
	chunk int
}

func (c *scriptConn) Read(b []byte) (int, error) {
	if len(b) > c.chunk {
		b = b[:c.chunk]
	}
	return c.r.Read(b)
}
func (c *scriptConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// dataOutcome is what one DATA led to, and what go-smtp read after it.
type dataOutcome struct {
	wire    string // bytes sent upstream after "DATA", final dot included
	decoded int64  // message size as counted for metrics
	err     string // "" or how the transaction failed
	after   []string
	direct  bool // the fast path read the connection itself
}

type scriptSession struct {
	data func(io.Reader, *idleConn) (wire string, decoded int64, err string)
	ic   *idleConn
	out  *dataOutcome
	seen bool
}

func (s *scriptSession) Reset()        {}
func (s *scriptSession) Logout() error { return nil }
func (s *scriptSession) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.seen {
		s.out.after = append(s.out.after, "MAIL "+from)
	}
	return nil
}
func (s *scriptSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.seen {
		s.out.after = append(s.out.after, "RCPT "+to)
	}
	return nil
}
func (s *scriptSession) Data(r io.Reader) error {
	if s.seen {
		s.out.after = append(s.out.after, "DATA")
		_, _ = io.Copy(io.Discard, r)
		return nil
	}
	s.seen = true
	s.out.wire, s.out.decoded, s.out.err = s.data(r, s.ic)
	return nil
}

// runScript serves one scripted connection with go-smtp, through an
// idleConn as in the proxy, and returns the outcome of its first DATA.
func runScript(t testing.TB, body []byte, limit, chunk int, data func(io.Reader, *idleConn) (string, int64, string)) dataOutcome {
	var out dataOutcome
	ic := newIdleConn(&scriptConn{r: bytes.NewReader(nil), chunk: chunk}, time.Now().Add(time.Hour), time.Hour, time.Hour)
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(sc *gosmtp.Conn) (gosmtp.Session, error) {
		if sc.Conn() != net.Conn(ic) {
			t.Fatalf("go-smtp reads %T, want the idleConn", sc.Conn())
		}
		return &scriptSession{data: data, out: &out, ic: ic}, nil
	}))
	srv.Domain = "test"
	srv.MaxMessageBytes = int64(limit)
	srv.MaxLineLength = testMaxLine
	srv.AllowInsecureAuth = true
	srv.ErrorLog = discardLog{}
	script := "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n" + string(body) +
		"MAIL FROM:<after@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n"
	ic.Conn.(*scriptConn).r.Reset([]byte(script))
	l := &oneConnListener{conn: ic, addr: &net.TCPAddr{}}
	_ = srv.Serve(l)
	_ = srv.Shutdown(context.Background()) // waits for the connection to end
	return out
}

// testMaxLine is go-smtp's line limit in these tests.
const testMaxLine = 200

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

func errClass(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, gosmtp.ErrDataTooLarge):
		return "too large"
	case errors.Is(err, gosmtp.ErrTooLongLine):
		return "line too long"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	return err.Error()
}

// oldData is the old path: go-smtp's reader, then textproto's DotWriter.
func oldData(r io.Reader, _ *idleConn) (string, int64, string) {
	msg, err := io.ReadAll(r)
	if err != nil {
		return "", 0, errClass(err)
	}
	var wire bytes.Buffer
	bw := bufio.NewWriter(&wire)
	dw := textproto.NewWriter(bw).DotWriter()
	_, _ = dw.Write(msg)
	_ = dw.Close()
	return wire.String(), int64(len(msg)), ""
}

// newData is the fast path as relayRawData runs it, with the size limit
// of the go-smtp server.
func newData(t testing.TB, limit int64, direct *bool) func(io.Reader, *idleConn) (string, int64, string) {
	return func(r io.Reader, ic *idleConn) (string, int64, string) {
		br := clientBuffer(r)
		if br == nil {
			t.Fatalf("clientBuffer(%T): got nil, want go-smtp's buffered reader (the DATA fast path is off)", r)
		}
		in := newStuffedInput(br, ic, testMaxLine, make([]byte, 64))
		defer in.finish()
		if direct != nil {
			defer func() { *direct = in.onDirect }()
		}
		var wire bytes.Buffer
		d, out, res, err := copyData(in, limit, nil, func(b []byte) error { wire.Write(b); return nil })
		if res == feedLimit {
			skipData(in, &d)
			return "", 0, "too large"
		}
		if err != nil {
			var re *clientReadError
			if !errors.As(err, &re) {
				t.Fatalf("copyData: got %v, want a client read error", err)
			}
			return "", 0, errClass(re.err)
		}
		if res != feedEnd {
			t.Fatalf("copyData: got result %d, want feedEnd", res)
		}
		wire.Write(out[:len(out)-d.holdBack()])
		wire.WriteString("\r\n.\r\n") // DotWriter.Close from its initial state
		return wire.String(), d.n, ""
	}
}

func checkSame(t *testing.T, body []byte, limit, chunk int) {
	t.Helper()
	want := runScript(t, body, limit, chunk, oldData)
	got := runScript(t, body, limit, chunk, newData(t, int64(limit), nil))
	if refusedEither(got.err, want.err) {
		// Which of the two limits is met first depends on how the reads
		// cut the stream, and the fast path reads in other pieces; the
		// message is refused either way.
		return
	}
	if got.err != want.err || got.wire != want.wire || got.decoded != want.decoded ||
		fmt.Sprint(got.after) != fmt.Sprint(want.after) {
		t.Errorf("body %q (limit %d, reads of %d):\ngot  err=%q wire=%q n=%d after=%v\nwant err=%q wire=%q n=%d after=%v",
			body, limit, chunk, got.err, got.wire, got.decoded, got.after, want.err, want.wire, want.decoded, want.after)
	}
}

// refusedEither reports whether the one outcome is a line too long and
// the other a line too long or a message too large.
func refusedEither(a, b string) bool {
	limits := func(e string) bool { return e == "line too long" || e == "too large" }
	return (a == "line too long" || b == "line too long") && limits(a) && limits(b)
}

// dataSeeds are the cases the fast path must get right: the final dot
// split across reads, stuffed and unstuffed dots, lone dots, bare CR and
// LF, CR runs, missing ends, long lines, sizes at the limit.
var dataSeeds = []string{
	".\r\n",
	"a\r\n.\r\n",
	"Subject: x\r\n\r\nbody\r\n.\r\n",
	"..\r\n.\r\n",
	"..leading dot\r\n...two\r\n.\r\n",
	".unstuffed\r\n.\r\n",
	". \r\n.\r\n",
	".\r.\r\n.\r\n",
	".\rx\r\n.\r\n",
	"a\n.\nb\r\n.\r\n",
	"a\n.\r\n",
	"bare\nlf\n\r\n.\r\n",
	"bare\rcr\r\n.\r\n",
	"cr run\r\r\n.\r\n",
	"\r\r\n.\r\n",
	"\r\n\r\n.\r\n",
	"no end",
	"no end\r\n",
	"no end\r\n.",
	"no end\r\n.\r",
	"x\r\n.\rMAIL\r\n.\r\n",
	"x\r\n..\r\n.\r\n",
	"middle.\r\n.\r\n",
	strings.Repeat("y", 150) + "\r\n.\r\n",
	strings.Repeat("z", 250) + "\r\n.\r\n",
	strings.Repeat("0123456789\r\n", 8) + ".\r\n",
	strings.Repeat("0123456789\r\n", 9) + ".\r\n",
	strings.Repeat(".123456789\r\n", 10) + ".\r\n",
}

func TestRawDataMatchesGoSMTP(t *testing.T) {
	// The harness itself: known outcomes of the fast path.
	known := []struct {
		body, wire string
		after      []string
	}{
		{"a\r\n..b\r\n.c\r\n.\r\n", "a\r\n..b\r\nc\r\n.\r\n", []string{"MAIL after@x", "RCPT b@x", "DATA"}},
		{"a\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", []string{"MAIL after@x", "RCPT b@x", "DATA"}},
		{".\r\n", "\r\n.\r\n", []string{"MAIL after@x", "RCPT b@x", "DATA"}},
	}
	for _, k := range known {
		got := runScript(t, []byte(k.body), 1<<20, 3, newData(t, 1<<20, nil))
		if got.wire != k.wire || got.err != "" || fmt.Sprint(got.after) != fmt.Sprint(k.after) {
			t.Errorf("body %q: got wire %q err %q after %v, want wire %q after %v", k.body, got.wire, got.err, got.after, k.wire, k.after)
		}
	}
	for _, seed := range dataSeeds {
		for _, limit := range []int{100, 101, 108, 1 << 20} {
			for _, chunk := range []int{1, 2, 3, 7, 4096} {
				checkSame(t, []byte(seed), limit, chunk)
			}
		}
	}
}

// TestRawDataFlushes checks a message several times dataFlushSize long,
// read in odd pieces: the output is cut for writing, never changed.
func TestRawDataFlushes(t *testing.T) {
	var b bytes.Buffer
	for i := 0; b.Len() < 3*dataFlushSize; i++ {
		fmt.Fprintf(&b, "%s%d %s\r\n", strings.Repeat(".", i%3), i, strings.Repeat("x", i%90))
	}
	b.WriteString(".\r\n")
	for _, chunk := range []int{1000, 4096} {
		checkSame(t, b.Bytes(), 1<<20, chunk)
	}
	var direct bool
	if runScript(t, b.Bytes(), 1<<20, 4096, newData(t, 1<<20, &direct)); !direct {
		t.Errorf("direct reads: got none, want the connection read directly once go-smtp's buffer is empty")
	}
}

func FuzzRawData(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add([]byte(s), uint16(100), uint8(2))
	}
	f.Fuzz(func(t *testing.T, body []byte, limit uint16, chunk uint8) {
		checkSame(t, body, int(limit)+1, int(chunk)+1)
	})
}

// loopbackPlain lets the proxy's client log in without TLS, as
// policy.allow_plaintext_loopback does: the DATA fast path reads the
// connection itself only when there is no TLS.
type loopbackPlain struct{ Authenticator }

func (a loopbackPlain) CredentialsAccepted(bool, netip.Addr) bool { return true }
func (a loopbackPlain) Login(ctx context.Context, req auth.Request) auth.Result {
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

// TestPlaintextLineTooLong: a DATA line over the limit, read directly by
// the fast path, ends the transaction and the connection as go-smtp does.
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
	rc.expectFor("after the long line", 500, "Too long line, closing connection")
	rc.expectClosed(5 * time.Second)
	if n := len(e.up.messages()); n != 0 {
		t.Errorf("upstream messages: got %d, want 0", n)
	}
}
