package ldap

import (
	"context"
	"net/netip"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
)

func sessionInfo(user, apID string, ip netip.Addr) session.Info {
	return session.Info{User: user, AppPasswordID: apID, Protocol: policy.LDAP, IP: ip}
}

// handle dispatches one client request; false ends the connection.
func (c *clientConn) handle(m *message) bool {
	switch m.tag {
	case tagBindRequest:
		return c.bind(m)
	case tagUnbindRequest:
		return false
	case tagAbandonRequest:
		c.abandon(m)
		return true
	case tagExtendedRequest:
		return c.extended(m)
	case tagSearchRequest:
		c.search(m)
		return true
	case tagCompareRequest:
		c.forwardDN(m)
		return true
	case tagModifyRequest, tagAddRequest, tagDelRequest, tagModDNRequest:
		if !c.opts.AllowWrites {
			c.reply(m, resultUnwillingToPerform, "writes are disabled on this proxy")
			return true
		}
		c.forwardDN(m)
		return true
	}
	c.log.Warn("ldap: unexpected protocol op, closing", "tag", m.tag)
	c.kill(resultProtocolError, "unexpected protocol operation")
	return false
}

func (c *clientConn) abandon(m *message) {
	_, v, _, _, err := tlv(m.op)
	if err != nil || len(v) == 0 || len(v) > 4 {
		return // abandon has no response
	}
	var id int64
	for _, b := range v {
		id = id<<8 | int64(b)
	}
	c.mu.Lock()
	o := c.ops[id]
	delete(c.ops, id)
	c.mu.Unlock()
	if o != nil {
		o.conn.abandon(o)
	}
}

// search handles a SearchRequest: before a bind only the root DSE
// (base "", scope base) may be read, as the service account.
func (c *clientConn) search(m *message) {
	p, err := decode(m.op)
	if err != nil || len(p.Children) < 8 {
		c.reply(m, resultProtocolError, "malformed search request")
		return
	}
	base := string(p.Children[0].ByteValue)
	scope, _ := p.Children[1].Value.(int64)
	if base == "" && scope == 0 {
		c.forward(m, true, nil)
		return
	}
	var filter *attrFilter
	if c.opts.serviceMode() && len(c.opts.Attributes) > 0 {
		filter = newAttrFilter(c.opts.Attributes)
	}
	c.forwardChecked(m, []string{base}, filter)
}

// forwardDN forwards a compare or write request after the service-mode
// confinement check on the DNs it names.
func (c *clientConn) forwardDN(m *message) {
	p, err := decode(m.op)
	if err != nil {
		c.reply(m, resultProtocolError, "malformed request")
		return
	}
	var dns []string
	switch m.tag {
	case tagDelRequest:
		dns = []string{p.Data.String()}
	case tagModDNRequest:
		if len(p.Children) < 3 {
			c.reply(m, resultProtocolError, "malformed request")
			return
		}
		dn := string(p.Children[0].ByteValue)
		parent := ""
		if i := strings.Index(dn, ","); i >= 0 {
			parent = dn[i+1:]
		}
		if len(p.Children) > 3 {
			parent = p.Children[3].Data.String()
		}
		dns = []string{dn, string(p.Children[1].ByteValue) + "," + parent}
	default:
		if len(p.Children) < 1 {
			c.reply(m, resultProtocolError, "malformed request")
			return
		}
		dns = []string{string(p.Children[0].ByteValue)}
	}
	c.forwardChecked(m, dns, nil)
}

// forwardChecked requires a bound user, and in service mode DNs inside
// SearchBases.
func (c *clientConn) forwardChecked(m *message, dns []string, filter *attrFilter) {
	if !c.isBound() {
		c.reply(m, resultInsufficientAccess, "authentication required")
		return
	}
	if c.opts.serviceMode() && len(c.opts.SearchBases) > 0 {
		for _, dn := range dns {
			if !withinBases(dn, c.opts.SearchBases) {
				c.reply(m, resultInsufficientAccess, "outside the allowed search bases")
				return
			}
		}
	}
	c.forward(m, false, filter)
}

// withinBases reports whether dn equals or lies below one of bases.
func withinBases(dn string, bases []string) bool {
	d, err := ldap.ParseDN(dn)
	if err != nil {
		return false
	}
	for _, b := range bases {
		bd, err := ldap.ParseDN(b)
		if err == nil && (bd.EqualFold(d) || bd.AncestorOfFold(d)) {
			return true
		}
	}
	return false
}

// forward sends m upstream. asService skips proxied authorization (root
// DSE reads); otherwise in proxied mode a critical RFC 4370 control names
// the bound user. A client's own proxied-authorization control is refused
// with insufficientAccessRights: only Legate decides whom a request runs as.
func (c *clientConn) forward(m *message, asService bool, filter *attrFilter) {
	raws, oids, err := splitControls(m.controls)
	if err != nil {
		c.reply(m, resultProtocolError, "malformed controls")
		return
	}
	paged := false
	for _, oid := range oids {
		switch oid {
		case oidProxiedAuthz, oidProxiedAuthzV1:
			c.reply(m, resultInsufficientAccess, "proxied authorization control not allowed")
			return
		case oidPagedResults:
			paged = true
		}
	}
	c.mu.Lock()
	user := c.user
	n := len(c.ops)
	c.mu.Unlock()
	if !asService && !c.opts.serviceMode() {
		if user == nil || user.DN == "" {
			c.reply(m, resultInsufficientAccess, "authentication required")
			return
		}
		raws = append(raws, proxiedAuthzControl("dn:"+user.DN))
	}
	if n >= c.opts.maxOutstanding() {
		c.reply(m, resultBusy, "too many outstanding requests")
		return
	}
	u, err := c.upstreamFor(paged)
	if err != nil {
		c.log.Warn("ldap upstream unavailable", "err", err)
		c.reply(m, resultUnavailable, "upstream directory unavailable")
		return
	}
	o := &op{client: c, clientID: m.id, respTag: responseTag(m.tag), filter: filter}
	c.mu.Lock()
	c.ops[m.id] = o
	c.mu.Unlock()
	if err := u.send(o, m.op, raws...); err != nil {
		c.failOp(o, resultUnavailable, "upstream directory unavailable")
	}
}

// upstreamFor picks the upstream connection: paged searches use a
// connection of the session's own (see pool.private), everything else the
// least busy pooled one.
func (c *clientConn) upstreamFor(paged bool) (*upConn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ioTimeout())
	defer cancel()
	if !paged {
		return c.srv.pool.get(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sticky != nil && !c.sticky.isDead() {
		return c.sticky, nil
	}
	u, err := c.srv.pool.private(ctx)
	if err != nil {
		return nil, err
	}
	c.sticky = u
	return u, nil
}

// extended handles an ExtendedRequest: StartTLS and WhoAmI locally,
// password modify forwarded when writes are allowed.
func (c *clientConn) extended(m *message) bool {
	p, err := decode(m.op)
	if err != nil || len(p.Children) < 1 {
		c.send(extendedResponse(m.id, resultProtocolError, "malformed extended request", "", nil))
		return true
	}
	switch name := p.Children[0].Data.String(); name {
	case oidStartTLS:
		return c.startTLS(m)
	case oidWhoAmI:
		c.mu.Lock()
		authz := ""
		if u := c.user; u != nil {
			authz = "dn:" + u.DN
			if u.DN == "" {
				authz = "u:" + u.Name
			}
		}
		c.mu.Unlock()
		c.send(extendedResponse(m.id, resultSuccess, "", "", &authz))
	case oidPasswordModify:
		if !c.opts.AllowWrites || c.opts.serviceMode() {
			c.send(extendedResponse(m.id, resultUnwillingToPerform, "password changes are disabled on this proxy", "", nil))
			return true
		}
		if !c.isBound() {
			c.send(extendedResponse(m.id, resultInsufficientAccess, "authentication required", "", nil))
			return true
		}
		c.forward(m, false, nil)
	default:
		c.send(extendedResponse(m.id, resultProtocolError, "unsupported extended operation", "", nil))
	}
	return true
}

// attrFilter keeps only listed attribute types in search entries (service
// mode). Types are compared case-insensitively, without options (";lang-x").
type attrFilter struct{ keep map[string]bool }

func newAttrFilter(attrs []string) *attrFilter {
	f := &attrFilter{keep: make(map[string]bool, len(attrs))}
	for _, a := range attrs {
		f.keep[strings.ToLower(a)] = true
	}
	return f
}

// apply rewrites a SearchResultEntry protocolOp.
func (f *attrFilter) apply(entry []byte) ([]byte, error) {
	if err := validate(entry, 0); err != nil {
		return nil, err
	}
	p, err := decode(entry)
	if err != nil || len(p.Children) < 2 {
		return nil, ErrProtocol
	}
	out := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tagSearchEntry, nil, "")
	out.AppendChild(p.Children[0])
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for _, a := range p.Children[1].Children {
		if len(a.Children) < 1 {
			continue
		}
		typ, _, _ := strings.Cut(string(a.Children[0].ByteValue), ";")
		if f.keep[strings.ToLower(typ)] {
			list.AppendChild(a)
		}
	}
	out.AppendChild(list)
	return out.Bytes(), nil
}
