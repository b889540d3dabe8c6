package ldap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legate-proxy/legate/internal/frontend"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// errNoUpstream: no upstream is configured.
var errNoUpstream = errors.New("ldap: no upstream configured")

// pool holds up to size connections to the upstream directory, each bound
// as the service account and shared by many client sessions at once:
// requests get fresh message IDs per connection and one reader goroutine
// per connection (demux) hands each response to the session that asked.
// Dead connections are dropped and re-dialled lazily on the next request.
type pool struct {
	opts func() *Options

	mu     sync.Mutex
	closed bool
	conns  []*upConn // nil or dead slots are re-dialled
	wg     sync.WaitGroup
}

// op is one client request in flight on an upstream connection.
type op struct {
	client   *clientConn
	clientID int64
	respTag  int // final response tag, for synthesised failures
	upID     int64
	conn     *upConn
	filter   *attrFilter // service mode: attributes to keep; nil keeps all
}

// upConn is one pooled upstream connection.
type upConn struct {
	pool      *pool
	nc        net.Conn
	br        *bufio.Reader
	ioTimeout time.Duration
	maxPDU    int
	log       *slog.Logger
	ready     chan struct{} // closed once dialled and bound (or failed)
	err       error         // set before ready is closed on failure

	wmu sync.Mutex // one writer at a time

	mu      sync.Mutex
	dead    bool
	nextID  int64
	pending map[int64]*op
	load    atomic.Int32
}

// get returns a live connection, preferring an idle one, dialling a new
// one into a free slot when all live ones are busy.
func (p *pool) get(ctx context.Context) (*upConn, error) {
	o := p.opts()
	size := o.poolSize()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errNoUpstream
	}
	if len(p.conns) < size {
		p.conns = append(p.conns, make([]*upConn, size-len(p.conns))...)
	}
	var best, dialing *upConn
	free := -1
	for i, c := range p.conns {
		switch {
		case c == nil || c.isDead():
			p.conns[i] = nil
			if free < 0 && i < size {
				free = i
			}
		case !c.isReady():
			dialing = c
		case best == nil || c.load.Load() < best.load.Load():
			best = c
		}
	}
	if best != nil && (best.load.Load() == 0 || free < 0) {
		p.mu.Unlock()
		return best, nil
	}
	if free < 0 {
		p.mu.Unlock()
		if dialing == nil {
			return nil, errNoUpstream
		}
		select {
		case <-dialing.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if dialing.err != nil {
			return nil, dialing.err
		}
		return dialing, nil
	}
	u := p.newConn(o)
	p.conns[free] = u
	p.mu.Unlock()

	if err := p.start(ctx, u, o); err != nil {
		p.mu.Lock()
		if p.conns[free] == u {
			p.conns[free] = nil
		}
		p.mu.Unlock()
		if best != nil {
			return best, nil
		}
		return nil, err
	}
	return u, nil
}

// private dials a connection outside the shared slots, for one session's
// paged searches: slapd keeps one paged-results state per connection, so
// two sessions paging over one connection would spoil each other's
// cookies. The caller closes it (closePrivate) when the session ends.
func (p *pool) private(ctx context.Context) (*upConn, error) {
	o := p.opts()
	u := p.newConn(o)
	if err := p.start(ctx, u, o); err != nil {
		return nil, err
	}
	return u, nil
}

// closePrivate closes a connection from private; its reader ends by itself.
func (u *upConn) closePrivate() {
	if u != nil && u.nc != nil {
		u.nc.Close()
	}
}

func (p *pool) newConn(o *Options) *upConn {
	return &upConn{pool: p, ready: make(chan struct{}), pending: make(map[int64]*op),
		ioTimeout: o.ioTimeout(), maxPDU: o.maxPDU(), log: o.logger()}
}

// start connects u and starts its reader; on error u is marked dead.
func (p *pool) start(ctx context.Context, u *upConn, o *Options) error {
	began := time.Now()
	err := u.connect(ctx, o.Upstream)
	switch {
	case err == nil:
		o.metrics().UpstreamConnect(policy.LDAP, time.Since(began))
	case !errors.Is(err, context.Canceled): // not merely the client leaving
		o.metrics().UpstreamError(policy.LDAP)
	}
	if err == nil {
		p.mu.Lock()
		if p.closed {
			u.nc.Close()
			err = errNoUpstream
		} else {
			p.wg.Add(1)
		}
		p.mu.Unlock()
	}
	if err != nil {
		u.err = err
		u.mu.Lock()
		u.dead = true
		u.mu.Unlock()
		close(u.ready)
		return err
	}
	close(u.ready)
	go u.demux()
	return nil
}

// close closes every connection and waits for their readers.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	conns := append([]*upConn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		if c != nil && c.isReady() && c.nc != nil {
			c.nc.Close()
		}
	}
	p.wg.Wait()
}

func (u *upConn) isReady() bool {
	select {
	case <-u.ready:
		return true
	default:
		return false
	}
}

func (u *upConn) isDead() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dead
}

// connect dials, runs StartTLS when configured and binds as the service
// account, synchronously, before the connection is shared.
func (u *upConn) connect(ctx context.Context, cfg *upstream.Config) error {
	if cfg == nil || cfg.Address == "" {
		return errNoUpstream
	}
	nc, err := cfg.Dial(ctx)
	if err != nil {
		return err
	}
	fail := func(what string, err error) error {
		nc.Close()
		return fmt.Errorf("%w: ldap %s: %w", upstream.ErrUnavailable, what, err)
	}
	u.br = bufio.NewReader(nc)
	if cfg.Mode == upstream.ModeSTARTTLS {
		if err := u.roundTrip(nc, 1, extendedRequestOp(oidStartTLS), tagExtendedResponse); err != nil {
			return fail("starttls", err)
		}
		if nc, err = cfg.Handshake(ctx, nc); err != nil {
			return err
		}
		u.br = bufio.NewReader(nc)
	}
	if err := u.roundTrip(nc, 2, bindRequestOp(cfg.MasterUser, cfg.MasterPassword), tagBindResponse); err != nil {
		return fail("service bind as "+cfg.MasterUser, err)
	}
	nc.SetDeadline(time.Time{})
	u.nc = nc
	u.nextID = 3
	return nil
}

// roundTrip sends one request and expects a successful response.
func (u *upConn) roundTrip(nc net.Conn, id int64, opb []byte, want int) error {
	nc.SetDeadline(time.Now().Add(u.ioTimeout))
	if _, err := nc.Write(envelope(id, opb)); err != nil {
		return err
	}
	raw, err := readPDU(u.br, u.maxPDU)
	if err != nil {
		return err
	}
	m, err := parseMessage(raw, false)
	if err != nil {
		return err
	}
	if m.id != id || m.tag != want {
		return fmt.Errorf("unexpected response (id %d, tag %d)", m.id, m.tag)
	}
	code, diag, err := resultCode(m.op)
	if err != nil {
		return err
	}
	if code != resultSuccess {
		return fmt.Errorf("result %d %q", code, diag)
	}
	return nil
}

// send registers o and writes its request (the client's protocolOp with
// ctls) under a fresh message ID. On error the connection is dead.
func (u *upConn) send(o *op, opb []byte, ctls ...[]byte) error {
	u.mu.Lock()
	if u.dead {
		u.mu.Unlock()
		return errConnDead
	}
	id := u.nextID
	u.nextID++
	if u.nextID > 1<<31-1 {
		u.nextID = 1
	}
	o.upID, o.conn = id, u
	u.pending[id] = o
	u.load.Add(1)
	u.nc.SetReadDeadline(time.Now().Add(u.ioTimeout))
	u.mu.Unlock()
	b := envelope(id, opb, ctls...)
	if err := u.write(b); err != nil {
		if u.forget(id) {
			return err // the caller answers
		}
		return nil // fail() already answered it
	}
	o.client.opts.metrics().RelayedBytes(policy.LDAP, frontend.DirToUpstream, len(b))
	return nil
}

var errConnDead = errors.New("ldap: upstream connection closed")

func (u *upConn) write(b []byte) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	u.nc.SetWriteDeadline(time.Now().Add(u.ioTimeout))
	if _, err := u.nc.Write(b); err != nil {
		u.nc.Close() // the demux reader notices and fails what is pending
		return fmt.Errorf("%w: %w", errConnDead, err)
	}
	return nil
}

// abandon forgets o and asks the upstream to stop it.
func (u *upConn) abandon(o *op) {
	if !u.forget(o.upID) {
		return
	}
	_ = u.write(envelope(u.takeID(), abandonOp(o.upID)))
}

func (u *upConn) takeID() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	id := u.nextID
	u.nextID++
	return id
}

// forget removes a pending op; false if it was not pending.
func (u *upConn) forget(id int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.pending[id]; !ok {
		return false
	}
	delete(u.pending, id)
	u.load.Add(-1)
	u.refreshDeadline()
	return true
}

// refreshDeadline: with requests pending the upstream must answer within
// the I/O timeout; an idle pooled connection waits without one. Call with
// u.mu held.
func (u *upConn) refreshDeadline() {
	if len(u.pending) > 0 {
		u.nc.SetReadDeadline(time.Now().Add(u.ioTimeout))
	} else {
		u.nc.SetReadDeadline(time.Time{})
	}
}

// demux reads responses and hands each to the session that asked, with the
// client's message ID. When the connection dies, every pending request gets
// an "unavailable" answer.
func (u *upConn) demux() {
	defer u.pool.wg.Done()
	var err error
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
		u.fail(err)
	}()
	for {
		var raw []byte
		raw, err = readPDU(u.br, u.maxPDU)
		if err != nil {
			return
		}
		var m *message
		if m, err = parseMessage(raw, false); err != nil {
			return
		}
		if m.id == 0 { // unsolicited: Notice of Disconnection
			err = errors.New("notice of disconnection from upstream")
			return
		}
		u.mu.Lock()
		o := u.pending[m.id]
		final := m.tag != tagSearchEntry && m.tag != tagSearchReference && m.tag != tagIntermediate
		if o != nil && final {
			delete(u.pending, m.id)
			u.load.Add(-1)
		}
		u.refreshDeadline()
		u.mu.Unlock()
		if o == nil {
			continue // abandoned, or its session is gone
		}
		o.client.deliver(o, m, final)
	}
}

// fail marks the connection dead and answers everything still pending.
func (u *upConn) fail(err error) {
	u.mu.Lock()
	u.dead = true
	pending := u.pending
	u.pending = make(map[int64]*op)
	u.load.Store(0)
	u.mu.Unlock()
	u.nc.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) && len(pending) > 0 {
		u.log.Warn("ldap upstream connection lost", "proto", "ldap", "pending", len(pending), "err", err)
	}
	for _, o := range pending {
		o.client.failOp(o, resultUnavailable, "upstream directory unavailable")
	}
}
