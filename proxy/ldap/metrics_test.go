package ldap_test

import (
	"bufio"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/legate-proxy/legate/internal/upstream"
	ldapproxy "github.com/legate-proxy/legate/proxy/ldap"
)

var _ ldapproxy.Metrics = (*logintest.Metrics)(nil)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// fakeDirectory is a minimal upstream LDAP server: it accepts any bind and
// answers every search with one entry and a success; it counts the bytes
// of the requests other than binds.
type fakeDirectory struct {
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	conns    []net.Conn
	reqBytes int
}

func startDirectory(t *testing.T) *fakeDirectory {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDirectory{ln: ln}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.conns = append(d.conns, c)
			d.mu.Unlock()
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer c.Close()
				d.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		d.mu.Lock()
		for _, c := range d.conns {
			c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
	})
	return d
}

func (d *fakeDirectory) requestBytes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reqBytes
}

func (d *fakeDirectory) serve(c net.Conn) {
	cr := &countingReader{r: bufio.NewReader(c)}
	for {
		before := cr.n
		p, err := ber.ReadPacket(cr)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		switch p.Children[1].Tag {
		case 0: // bind: the service account
			c.Write(message(id, result(1, 0)))
		case 3: // search
			d.mu.Lock()
			d.reqBytes += cr.n - before
			d.mu.Unlock()
			c.Write(message(id, entry("uid=alice,ou=people,dc=example,dc=com", "cn", "Alice Example")))
			c.Write(message(id, result(5, 0)))
		case 2: // unbind
			return
		}
	}
}

func message(id int64, op *ber.Packet) []byte {
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	env.AppendChild(op)
	return env.Bytes()
}

func result(tag ber.Tag, code int64) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	return op
}

func entry(dn, attr, value string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 4, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, attr, ""))
	vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
	vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, value, ""))
	a.AppendChild(vals)
	attrs.AppendChild(a)
	op.AppendChild(attrs)
	return op
}

func bindRequest(dn, password string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(3), ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, ""))
	return op
}

func searchRequest(base string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 3, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(2), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(0), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(0), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(0), ""))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, ""))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 7, "objectClass", "")) // present
	op.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""))
	return op
}

// rawClient speaks LDAP messages over a plain connection, counting the
// bytes it receives.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	cr *countingReader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, cr: &countingReader{r: bufio.NewReader(c)}}
}

func (rc *rawClient) send(b []byte) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

// read returns the protocolOp tag and result code (-1 when it has none)
// of the next message.
func (rc *rawClient) read() (tag ber.Tag, code int64) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := ber.ReadPacket(rc.cr)
	if err != nil || len(p.Children) < 2 {
		rc.t.Fatalf("read message: %v", err)
	}
	op := p.Children[1]
	code = -1
	if op.Tag != 4 && len(op.Children) > 0 {
		code, _ = op.Children[0].Value.(int64)
	}
	return op.Tag, code
}

func TestMetricsRelayedBytes(t *testing.T) {
	checkLeaks(t)
	dir := startDirectory(t)
	fm := logintest.NewMetrics()
	_, addr := startFake(t, ldapproxy.Options{Auth: &logintest.Auth{PlainOK: true}, Logger: testLogger(t), Metrics: fm,
		PoolSize: 1, Upstream: &upstream.Config{Address: dir.ln.Addr().String(), Mode: upstream.ModeNone,
			MasterUser: "cn=legate,dc=example,dc=com", MasterPassword: "service-secret", DialTimeout: 2 * time.Second}})
	c := dialRaw(t, addr)
	c.send(message(1, bindRequest("uid=alice,ou=people,dc=example,dc=com", "allow")))
	if tag, code := c.read(); tag != 1 || code != 0 {
		t.Fatalf("bind: got tag %d code %d, want a successful bind response", tag, code)
	}
	afterBind := c.cr.n // the bind response is Legate's own, not relayed
	for i := range 3 {
		c.send(message(int64(2+i), searchRequest("dc=example,dc=com")))
		if tag, _ := c.read(); tag != 4 {
			t.Fatalf("search %d: got tag %d, want a search entry (4)", i, tag)
		}
		if tag, code := c.read(); tag != 5 || code != 0 {
			t.Fatalf("search %d: got tag %d code %d, want a successful search done (5)", i, tag, code)
		}
	}
	received := c.cr.n - afterBind
	c.send(message(9, ber.Encode(ber.ClassApplication, ber.TypePrimitive, 2, nil, ""))) // unbind
	got := fm.WaitSnapshot(func(s logintest.MetricsSnapshot) bool {
		return s.Up == dir.requestBytes() && s.Down == received
	})
	if got.Up == 0 || got.Up != dir.requestBytes() {
		t.Errorf("to_upstream: got %d bytes, want %d (what the directory received, binds aside)", got.Up, dir.requestBytes())
	}
	if got.Down == 0 || got.Down != received {
		t.Errorf("to_client: got %d bytes, want %d (what the client received after its bind)", got.Down, received)
	}
	if got.Connects != 1 || got.Errors != 0 || got.Protos != "ldap" {
		t.Errorf("got %d connects, %d errors, protocols %q; want 1 (one pooled connection), 0, ldap",
			got.Connects, got.Errors, got.Protos)
	}
}

func TestMetricsUpstreamError(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	fm := logintest.NewMetrics()
	_, addr := startFake(t, ldapproxy.Options{Auth: &logintest.Auth{PlainOK: true}, Logger: testLogger(t), Metrics: fm,
		Upstream: &upstream.Config{Address: dead, Mode: upstream.ModeNone, DialTimeout: time.Second}})
	c := dialRaw(t, addr)
	c.send(message(1, bindRequest("uid=alice,ou=people,dc=example,dc=com", "allow")))
	if tag, code := c.read(); tag != 1 || code != 0 {
		t.Fatalf("bind: got tag %d code %d, want a successful bind response", tag, code)
	}
	for i := range 2 {
		c.send(message(int64(2+i), searchRequest("dc=example,dc=com")))
		if tag, code := c.read(); tag != 5 || code != 52 {
			t.Fatalf("search %d: got tag %d code %d, want search done with unavailable (52)", i, tag, code)
		}
	}
	got := fm.Snapshot()
	if got.Errors != 2 || got.Connects != 0 || got.Up != 0 || got.Down != 0 || got.Protos != "ldap" {
		t.Errorf("got %+v, want 2 ldap upstream errors (one per dial), no connect, no bytes", got)
	}
}
