package ldap

import (
	"context"
	"net/netip"
	"strings"

	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
)

func sessionInfo(user, apID string, ip netip.Addr) session.Info {
	return session.Info{User: user, AppPasswordID: apID, Protocol: policy.LDAP, IP: ip}
}

// handle decodes and dispatches one client request; false ends the
// connection. A request the strict decoder refuses ends the connection
// with protocolError.
func (c *clientConn) handle(m *message) bool {
	r, err := decodeRequest(m)
	if err != nil {
		c.log.Warn("ldap protocol error, closing", "err", err)
		c.kill(resultProtocolError, "malformed request")
		return false
	}
	switch r.tag {
	case tagBindRequest:
		return c.bind(r)
	case tagUnbindRequest:
		return false
	case tagAbandonRequest:
		c.abandon(r)
		return true
	case tagExtendedRequest:
		return c.extended(r)
	case tagSearchRequest:
		return c.search(r)
	case tagCompareRequest:
		return c.compare(r)
	}
	// add, modify, delete, modify DN
	if !c.opts.AllowWrites || c.opts.serviceMode() {
		c.reply(r, resultUnwillingToPerform, "writes are disabled on this proxy")
		return true
	}
	return c.forwardRequest(r, nil, nil)
}

func (c *clientConn) abandon(r *request) {
	c.mu.Lock()
	o := c.ops[r.abandonID]
	delete(c.ops, r.abandonID)
	c.mu.Unlock()
	if o != nil {
		o.conn.abandon(o)
	}
}

// rootDSEAttrs is the fixed list of root DSE attributes (RFC 4512 §5.1,
// plus Active Directory's naming contexts) a client may read before a
// bind; its request is built by Legate and runs as the service account.
var rootDSEAttrs = [...]string{
	"objectClass", "namingContexts", "subschemaSubentry", "supportedLDAPVersion",
	"supportedSASLMechanisms", "supportedExtension", "supportedControl", "supportedFeatures",
	"vendorName", "vendorVersion", "defaultNamingContext", "dnsHostName",
}

// rootDSE reads the root DSE for r (base "", scope base) with a request of
// Legate's own: filter (objectClass=*), the requested attributes that are
// in rootDSEAttrs, no client controls.
func (c *clientConn) rootDSE(r *request) bool {
	s := r.search
	attrs := rootDSEAttrs[:]
	all := len(s.attrs) == 0
	var pick []string
	for _, a := range s.attrs {
		if a == "*" || a == "+" {
			all = true
			break
		}
		typ, _, _ := strings.Cut(a, ";")
		for _, k := range rootDSEAttrs {
			if strings.EqualFold(k, typ) {
				pick = append(pick, k)
			}
		}
	}
	if !all {
		attrs = pick
		if len(attrs) == 0 {
			attrs = []string{"1.1"}
		}
	}
	req := &request{id: r.id, tag: tagSearchRequest, search: &searchRequest{
		sizeLimit: 1, typesOnly: s.typesOnly,
		filter: &filter{kind: filterPresent, attr: "objectClass"}, attrs: attrs,
	}}
	return c.forward(r, encodeOp(req), nil, false, nil, true)
}

// search handles a SearchRequest: before a bind only the root DSE may be
// read.
func (c *clientConn) search(r *request) bool {
	s := r.search
	if s.base == "" && s.scope == 0 {
		return c.rootDSE(r)
	}
	if !c.isBound() {
		c.reply(r, resultInsufficientAccess, "authentication required")
		return true
	}
	ctl, err := filterControls(r)
	if err != nil {
		return c.protocolError(err)
	}
	if ctl.code != 0 {
		c.reply(r, ctl.code, ctl.diag)
		return true
	}
	var filter *attrFilter
	if c.opts.serviceMode() {
		if !c.withinBases(s.base) {
			c.reply(r, resultInsufficientAccess, "outside the allowed search bases")
			return true
		}
		s.deref = 0 // an alias must not lead outside the bases
		if len(c.opts.Attributes) > 0 {
			filter = newAttrFilter(c.opts.Attributes)
			if !filter.allowsFilter(s.filter) || !filter.allowsSelectors(s.attrs) || !filter.allowsSelectors(ctl.sortKeys) {
				c.reply(r, resultInsufficientAccess, "attribute not allowed on this proxy")
				return true
			}
		}
	}
	return c.forward(r, encodeOp(r), ctl.raws, ctl.paged, filter, false)
}

// compare handles a CompareRequest.
func (c *clientConn) compare(r *request) bool {
	if !c.isBound() {
		c.reply(r, resultInsufficientAccess, "authentication required")
		return true
	}
	if c.opts.serviceMode() {
		if !c.withinBases(r.compare.dn) {
			c.reply(r, resultInsufficientAccess, "outside the allowed search bases")
			return true
		}
		if len(c.opts.Attributes) > 0 && !newAttrFilter(c.opts.Attributes).allows(r.compare.attr) {
			c.reply(r, resultInsufficientAccess, "attribute not allowed on this proxy")
			return true
		}
	}
	return c.forwardRequest(r, nil, nil)
}

// forwardRequest applies the control allow-list and forwards r re-encoded;
// body replaces the encoded protocolOp when non-nil.
func (c *clientConn) forwardRequest(r *request, body []byte, filter *attrFilter) bool {
	if !c.isBound() {
		c.reply(r, resultInsufficientAccess, "authentication required")
		return true
	}
	ctl, err := filterControls(r)
	if err != nil {
		return c.protocolError(err)
	}
	if ctl.code != 0 {
		c.reply(r, ctl.code, ctl.diag)
		return true
	}
	if body == nil {
		body = encodeOp(r)
	}
	return c.forward(r, body, ctl.raws, ctl.paged, filter, false)
}

func (c *clientConn) protocolError(err error) bool {
	c.log.Warn("ldap protocol error, closing", "err", err)
	c.kill(resultProtocolError, "malformed request")
	return false
}

func (c *clientConn) withinBases(dn string) bool {
	return len(c.opts.SearchBases) == 0 || withinBases(dn, c.opts.SearchBases)
}

// maxPreBindOutstanding bounds the root DSE reads an unbound client may
// have in flight: a client that never reads cannot pile up work in the
// directory ahead of the bound sessions (#13.3).
const maxPreBindOutstanding = 4

// forward sends the encoded protocolOp body of r upstream with the
// re-encoded controls ctls. asService runs it as the service account
// without controls (root DSE reads); otherwise in proxied mode a critical
// RFC 4370 control names the bound user. A message ID that is still
// outstanding is a protocol error (false: the connection ends).
func (c *clientConn) forward(r *request, body []byte, ctls [][]byte, paged bool, filter *attrFilter, asService bool) bool {
	c.mu.Lock()
	user := c.user
	n := len(c.ops)
	_, reused := c.ops[r.id]
	c.mu.Unlock()
	if reused {
		c.log.Warn("ldap: message ID reused while outstanding, closing", "id", r.id)
		c.kill(resultProtocolError, "message ID in use")
		return false
	}
	if asService {
		ctls = nil
	} else if !c.opts.serviceMode() {
		if user == nil || user.DN == "" {
			c.reply(r, resultInsufficientAccess, "authentication required")
			return true
		}
		ctls = append(ctls, proxiedAuthzControl("dn:"+user.DN))
	}
	limit := c.opts.maxOutstanding()
	if user == nil {
		limit = min(limit, maxPreBindOutstanding)
	}
	if n >= limit {
		c.reply(r, resultBusy, "too many outstanding requests")
		return true
	}
	u, err := c.upstreamFor(paged)
	if err != nil {
		c.log.Warn("ldap upstream unavailable", "err", err)
		c.reply(r, resultUnavailable, "upstream directory unavailable")
		return true
	}
	o := &op{client: c, clientID: r.id, respTag: responseTag(r.tag), filter: filter}
	c.mu.Lock()
	c.ops[r.id] = o
	c.mu.Unlock()
	if err := u.send(o, body, ctls...); err != nil {
		c.failOp(o, resultUnavailable, "upstream directory unavailable")
	}
	return true
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
// password modify forwarded (re-encoded) when writes are allowed.
func (c *clientConn) extended(r *request) bool {
	e := r.extended
	switch e.name {
	case oidStartTLS:
		if e.hasValue {
			return c.protocolError(protoErr("StartTLS with a value"))
		}
		return c.startTLS(r)
	case oidWhoAmI:
		if e.hasValue {
			return c.protocolError(protoErr("WhoAmI with a value"))
		}
		c.mu.Lock()
		authz := ""
		if u := c.user; u != nil {
			authz = "dn:" + u.DN
			if u.DN == "" {
				authz = "u:" + u.Name
			}
		}
		c.mu.Unlock()
		c.queue(extendedResponse(r.id, resultSuccess, "", "", &authz))
	case oidPasswordModify:
		if !c.opts.AllowWrites || c.opts.serviceMode() {
			c.queue(extendedResponse(r.id, resultUnwillingToPerform, "password changes are disabled on this proxy", "", nil))
			return true
		}
		if !c.isBound() {
			c.queue(extendedResponse(r.id, resultInsufficientAccess, "authentication required", "", nil))
			return true
		}
		if e.hasValue {
			v, err := passwdModifyValue(e.value)
			if err != nil {
				return c.protocolError(err)
			}
			e.value = v
		}
		return c.forwardRequest(r, nil, nil)
	default:
		c.queue(extendedResponse(r.id, resultProtocolError, "unsupported extended operation", "", nil))
	}
	return true
}

// passwdModifyValue decodes and re-encodes PasswdModifyRequestValue ::=
// SEQUENCE { userIdentity [0] OPTIONAL, oldPasswd [1] OPTIONAL, newPasswd
// [2] OPTIONAL } (RFC 3062 §2).
func passwdModifyValue(v []byte) ([]byte, error) {
	s, rest, err := expect(v, 0x30, "password modify")
	if err != nil {
		return nil, err
	}
	if err := done(rest, "password modify"); err != nil {
		return nil, err
	}
	var out []byte
	next := byte(0x80)
	for len(s) > 0 {
		id, val, _, r, err := tlv(s)
		if err != nil {
			return nil, err
		}
		if id < next || id > 0x82 {
			return nil, protoErr("password modify: field 0x%02x", id)
		}
		if id == 0x80 {
			if _, err := text(val, "password modify: userIdentity"); err != nil {
				return nil, err
			}
		}
		out = el(out, id, val)
		next, s = id+1, r
	}
	return el(nil, 0x30, out), nil
}
