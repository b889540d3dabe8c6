package ldap

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// This file is the one decoder for every operation the front-end accepts
// (RFC 4511 §4). It checks the exact identifier octet of every field
// (universal, application and context tags, primitive or constructed),
// ENUMERATED where the RFC says so, definite lengths, no bytes left over
// inside any element, minimal INTEGER encodings, UTF-8 without NUL in
// strings, attribute descriptions and OIDs in their RFC 4512 syntax. What
// it returns is re-encoded by encode.go: client bytes never go upstream.

// maxBindDN bounds the name of a BindRequest (#18): longer names are a
// protocol error before any directory lookup or audit record.
const maxBindDN = 1024

// request is a decoded client message. Exactly one of the op fields is set,
// according to tag.
type request struct {
	id       int64
	tag      int
	controls []control

	bind      *bindRequest
	search    *searchRequest
	compare   *compareRequest
	modify    *modifyRequest
	add       *addRequest
	del       string // DelRequest: the entry's DN
	modDN     *modDNRequest
	extended  *extendedRequest
	abandonID int64
}

// control is a decoded Control (RFC 4511 §4.1.11).
type control struct {
	oid      string
	critical bool
	value    []byte
	hasValue bool
}

type bindRequest struct {
	version  int64
	name     string
	simple   bool   // [0] simple; otherwise [3] SASL
	password string // simple only
	mech     string // SASL only
}

type searchRequest struct {
	base      string
	scope     int64 // 0 base, 1 one, 2 sub (3 subordinate, RFC 4512 draft, refused)
	deref     int64 // 0..3
	sizeLimit int64
	timeLimit int64
	typesOnly bool
	filter    *filter
	attrs     []string
}

// Filter choices (RFC 4511 §4.5.1.7), the context tag number.
const (
	filterAnd        = 0
	filterOr         = 1
	filterNot        = 2
	filterEquality   = 3
	filterSubstrings = 4
	filterGreater    = 5
	filterLess       = 6
	filterPresent    = 7
	filterApprox     = 8
	filterExtensible = 9
)

type filter struct {
	kind  int
	subs  []*filter // and, or: any number; not: one
	attr  string    // every kind but and/or/not; may be empty for extensible
	value []byte    // equality, ordering, approx, extensible matchValue
	// substrings: initial [0], any [1], final [2] in order
	parts []substring
	// extensible match
	rule    string
	dnAttrs bool
}

type substring struct {
	kind  int // 0 initial, 1 any, 2 final
	value []byte
}

type compareRequest struct {
	dn, attr string
	value    []byte
}

type change struct {
	op   int64 // 0 add, 1 delete, 2 replace, 3 increment (RFC 4525)
	attr attribute
}

type attribute struct {
	typ  string
	vals [][]byte
}

type modifyRequest struct {
	dn      string
	changes []change
}

type addRequest struct {
	dn    string
	attrs []attribute
}

type modDNRequest struct {
	dn, newRDN  string
	deleteOld   bool
	newSuperior string
	hasSuperior bool
}

type extendedRequest struct {
	name     string
	value    []byte
	hasValue bool
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// expect splits off the first element of b, which must have identifier id.
func expect(b []byte, id byte, what string) (content, rest []byte, err error) {
	got, content, _, rest, err := tlv(b)
	if err != nil {
		return nil, nil, err
	}
	if got != id {
		return nil, nil, protoErr("%s: identifier 0x%02x, want 0x%02x", what, got, id)
	}
	return content, rest, nil
}

// done checks that nothing is left in an element.
func done(rest []byte, what string) error {
	if len(rest) != 0 {
		return protoErr("%s: %d trailing bytes", what, len(rest))
	}
	return nil
}

// intValue decodes the content of a non-negative INTEGER or ENUMERATED of
// at most four octets, minimally encoded (X.690 §8.3.2).
func intValue(v []byte, what string) (int64, error) {
	if len(v) == 0 || len(v) > 4 {
		return 0, protoErr("%s: integer of %d octets", what, len(v))
	}
	if v[0]&0x80 != 0 {
		return 0, protoErr("%s: negative integer", what)
	}
	if len(v) > 1 && v[0] == 0 && v[1]&0x80 == 0 {
		return 0, protoErr("%s: integer not minimally encoded", what)
	}
	var n int64
	for _, c := range v {
		n = n<<8 | int64(c)
	}
	return n, nil
}

func getInt(b []byte, id byte, what string) (int64, []byte, error) {
	v, rest, err := expect(b, id, what)
	if err != nil {
		return 0, nil, err
	}
	n, err := intValue(v, what)
	return n, rest, err
}

func getEnum(b []byte, what string, max int64) (int64, []byte, error) {
	n, rest, err := getInt(b, 0x0a, what)
	if err == nil && n > max {
		err = protoErr("%s: value %d out of range", what, n)
	}
	return n, rest, err
}

func boolValue(v []byte, what string) (bool, error) {
	if len(v) != 1 {
		return false, protoErr("%s: BOOLEAN of %d octets", what, len(v))
	}
	return v[0] != 0, nil
}

// text checks an LDAPString/LDAPDN: UTF-8 without NUL (a C string in the
// upstream would end there).
func text(v []byte, what string) (string, error) {
	if !utf8.Valid(v) {
		return "", protoErr("%s: not UTF-8", what)
	}
	for _, c := range v {
		if c == 0 {
			return "", protoErr("%s: NUL", what)
		}
	}
	return string(v), nil
}

func getText(b []byte, id byte, what string) (string, []byte, error) {
	v, rest, err := expect(b, id, what)
	if err != nil {
		return "", nil, err
	}
	s, err := text(v, what)
	return s, rest, err
}

// getAttrDesc reads an AttributeDescription (RFC 4512 §2.5) under id.
func getAttrDesc(b []byte, id byte, what string) (string, []byte, error) {
	v, rest, err := expect(b, id, what)
	if err != nil {
		return "", nil, err
	}
	if !validAttrDesc(string(v)) {
		return "", nil, protoErr("%s: not an attribute description", what)
	}
	return string(v), rest, nil
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// validKeystring: ALPHA *(ALPHA / DIGIT / "-").
func validKeystring(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

// validNumericOID: number 1*("." number), number = "0" / (%x31-39 *DIGIT);
// no spaces, no NUL, no leading zeros.
func validNumericOID(s string) bool {
	if s == "" {
		return false
	}
	arcs := 0
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j == i || (s[i] == '0' && j-i > 1) {
			return false
		}
		arcs++
		if j == len(s) {
			break
		}
		if s[j] != '.' || j+1 == len(s) {
			return false
		}
		i = j + 1
	}
	return arcs >= 2
}

// validOID is an oid (RFC 4512 §1.4): a descr or a numericoid.
func validOID(s string) bool { return validKeystring(s) || validNumericOID(s) }

// validAttrDesc: attributedescription = attributetype options, options =
// *( ";" 1*(ALPHA / DIGIT / "-") ).
func validAttrDesc(s string) bool {
	parts := strings.Split(s, ";")
	if !validOID(parts[0]) {
		return false
	}
	for _, o := range parts[1:] {
		if o == "" {
			return false
		}
		for i := 0; i < len(o); i++ {
			if c := o[i]; !isAlpha(c) && !isDigit(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// validAttrSelector: a requested attribute (RFC 4511 §4.5.1.8): an
// attribute description, "*", "+" (RFC 3673), "1.1", or "@" objectclass
// (RFC 4529).
func validAttrSelector(s string) bool {
	switch {
	case s == "*", s == "+", s == "1.1":
		return true
	case len(s) > 1 && s[0] == '@':
		return validOID(s[1:])
	}
	return validAttrDesc(s)
}

// decodeRequest decodes the protocolOp and controls of m strictly.
func decodeRequest(m *message) (*request, error) {
	if m.id == 0 {
		return nil, protoErr("messageID 0 is reserved for notifications")
	}
	r := &request{id: m.id, tag: m.tag}
	id, content, _, _, err := tlv(m.op)
	if err != nil {
		return nil, err
	}
	want := byte(0x60) | byte(m.tag) // constructed application
	switch m.tag {
	case tagUnbindRequest, tagAbandonRequest, tagDelRequest:
		want = 0x40 | byte(m.tag) // primitive application
	}
	if id != want {
		return nil, protoErr("protocolOp identifier 0x%02x, want 0x%02x", id, want)
	}
	if r.controls, err = decodeControls(m.controls); err != nil {
		return nil, err
	}
	switch m.tag {
	case tagBindRequest:
		r.bind, err = decodeBind(content)
	case tagUnbindRequest:
		if len(content) != 0 {
			err = protoErr("unbind: non-empty NULL")
		}
	case tagSearchRequest:
		r.search, err = decodeSearch(content)
	case tagCompareRequest:
		r.compare, err = decodeCompare(content)
	case tagAbandonRequest:
		r.abandonID, err = intValue(content, "abandon")
	case tagModifyRequest:
		r.modify, err = decodeModify(content)
	case tagAddRequest:
		r.add, err = decodeAdd(content)
	case tagDelRequest:
		r.del, err = text(content, "delete: entry")
	case tagModDNRequest:
		r.modDN, err = decodeModDN(content)
	case tagExtendedRequest:
		r.extended, err = decodeExtended(content)
	default:
		err = protoErr("unexpected protocol operation %d", m.tag)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func decodeControls(ctl []byte) ([]control, error) {
	if ctl == nil {
		return nil, nil
	}
	body, _, err := expect(ctl, 0xa0, "controls")
	if err != nil {
		return nil, err
	}
	var out []control
	for len(body) > 0 {
		var c []byte
		if c, body, err = expect(body, 0x30, "control"); err != nil {
			return nil, err
		}
		var k control
		var oid string
		if oid, c, err = getText(c, 0x04, "control type"); err != nil {
			return nil, err
		}
		if !validNumericOID(oid) {
			return nil, protoErr("control type %q is not a numericoid", oid)
		}
		k.oid = oid
		if len(c) > 0 && c[0] == 0x01 {
			var v []byte
			if v, c, err = expect(c, 0x01, "criticality"); err != nil {
				return nil, err
			}
			if k.critical, err = boolValue(v, "criticality"); err != nil {
				return nil, err
			}
		}
		if len(c) > 0 {
			if k.value, c, err = expect(c, 0x04, "control value"); err != nil {
				return nil, err
			}
			k.hasValue = true
		}
		if err := done(c, "control"); err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.oid == k.oid {
				return nil, protoErr("control %s twice", k.oid)
			}
		}
		// The values of allow-listed controls are checked here, whatever
		// the operation, so malformed ones end the connection everywhere.
		switch k.oid {
		case oidPagedResults:
			_, err = pagedValue(k)
		case oidServerSideSort:
			_, _, err = sortValue(k)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func decodeBind(b []byte) (*bindRequest, error) {
	r := &bindRequest{}
	var err error
	if r.version, b, err = getInt(b, 0x02, "bind: version"); err != nil {
		return nil, err
	}
	if r.version < 1 || r.version > 127 {
		return nil, protoErr("bind: version %d", r.version)
	}
	v, b, err := expect(b, 0x04, "bind: name")
	if err != nil {
		return nil, err
	}
	if len(v) > maxBindDN {
		return nil, protoErr("bind: name of %d bytes exceeds %d", len(v), maxBindDN)
	}
	if r.name, err = text(v, "bind: name"); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, protoErr("bind: no authentication")
	}
	switch b[0] {
	case 0x80:
		var pw []byte
		if pw, b, err = expect(b, 0x80, "bind: simple"); err != nil {
			return nil, err
		}
		r.simple, r.password = true, string(pw)
	case 0xa3:
		var s []byte
		if s, b, err = expect(b, 0xa3, "bind: sasl"); err != nil {
			return nil, err
		}
		if r.mech, s, err = getText(s, 0x04, "bind: sasl mechanism"); err != nil {
			return nil, err
		}
		if len(s) > 0 {
			if _, s, err = expect(s, 0x04, "bind: sasl credentials"); err != nil {
				return nil, err
			}
		}
		if err := done(s, "bind: sasl"); err != nil {
			return nil, err
		}
	default:
		return nil, protoErr("bind: authentication choice 0x%02x", b[0])
	}
	return r, done(b, "bind")
}

func decodeSearch(b []byte) (*searchRequest, error) {
	r := &searchRequest{}
	var err error
	if r.base, b, err = getText(b, 0x04, "search: base"); err != nil {
		return nil, err
	}
	if r.scope, b, err = getEnum(b, "search: scope", 2); err != nil {
		return nil, err
	}
	if r.deref, b, err = getEnum(b, "search: derefAliases", 3); err != nil {
		return nil, err
	}
	if r.sizeLimit, b, err = getInt(b, 0x02, "search: sizeLimit"); err != nil {
		return nil, err
	}
	if r.timeLimit, b, err = getInt(b, 0x02, "search: timeLimit"); err != nil {
		return nil, err
	}
	v, b, err := expect(b, 0x01, "search: typesOnly")
	if err != nil {
		return nil, err
	}
	if r.typesOnly, err = boolValue(v, "search: typesOnly"); err != nil {
		return nil, err
	}
	if r.filter, b, err = decodeFilter(b, 0); err != nil {
		return nil, err
	}
	list, b, err := expect(b, 0x30, "search: attributes")
	if err != nil {
		return nil, err
	}
	for len(list) > 0 {
		var a []byte
		if a, list, err = expect(list, 0x04, "search: attribute"); err != nil {
			return nil, err
		}
		if !validAttrSelector(string(a)) {
			return nil, protoErr("search: attribute selector %q", a)
		}
		r.attrs = append(r.attrs, string(a))
	}
	return r, done(b, "search")
}

// decodeFilter reads one Filter off b.
func decodeFilter(b []byte, depth int) (*filter, []byte, error) {
	if depth > maxDepth {
		return nil, nil, protoErr("filter nested deeper than %d", maxDepth)
	}
	id, v, _, rest, err := tlv(b)
	if err != nil {
		return nil, nil, err
	}
	if id&0xc0 != 0x80 {
		return nil, nil, protoErr("filter: identifier 0x%02x is not a context tag", id)
	}
	f := &filter{kind: int(id & 0x1f)}
	constructed := id&0x20 != 0
	if constructed != (f.kind != filterPresent) || f.kind > filterExtensible {
		return nil, nil, protoErr("filter: identifier 0x%02x", id)
	}
	switch f.kind {
	case filterAnd, filterOr:
		for len(v) > 0 {
			var s *filter
			if s, v, err = decodeFilter(v, depth+1); err != nil {
				return nil, nil, err
			}
			f.subs = append(f.subs, s)
		}
	case filterNot:
		var s *filter
		if s, v, err = decodeFilter(v, depth+1); err != nil {
			return nil, nil, err
		}
		if err := done(v, "filter: not"); err != nil {
			return nil, nil, err
		}
		f.subs = []*filter{s}
	case filterEquality, filterGreater, filterLess, filterApprox:
		if f.attr, v, err = getAttrDesc(v, 0x04, "filter: attribute"); err != nil {
			return nil, nil, err
		}
		if f.value, v, err = expect(v, 0x04, "filter: assertion value"); err != nil {
			return nil, nil, err
		}
		if err := done(v, "filter: assertion"); err != nil {
			return nil, nil, err
		}
	case filterSubstrings:
		if f.attr, v, err = getAttrDesc(v, 0x04, "filter: attribute"); err != nil {
			return nil, nil, err
		}
		var list []byte
		if list, v, err = expect(v, 0x30, "filter: substrings"); err != nil {
			return nil, nil, err
		}
		if err := done(v, "filter: substrings"); err != nil {
			return nil, nil, err
		}
		for len(list) > 0 {
			sid, sv, _, r, err := tlv(list)
			if err != nil {
				return nil, nil, err
			}
			k := int(sid) - 0x80
			n := len(f.parts)
			switch {
			case k < 0 || k > 2:
				return nil, nil, protoErr("filter: substring identifier 0x%02x", sid)
			case k == 0 && n > 0:
				return nil, nil, protoErr("filter: initial substring not first")
			case n > 0 && f.parts[n-1].kind == 2:
				return nil, nil, protoErr("filter: substring after final")
			}
			f.parts = append(f.parts, substring{k, sv})
			list = r
		}
		if len(f.parts) == 0 {
			return nil, nil, protoErr("filter: no substrings")
		}
	case filterPresent:
		if !validAttrDesc(string(v)) {
			return nil, nil, protoErr("filter: present: not an attribute description")
		}
		f.attr = string(v)
	case filterExtensible:
		if len(v) > 0 && v[0] == 0x81 {
			var rule []byte
			if rule, v, err = expect(v, 0x81, "filter: matchingRule"); err != nil {
				return nil, nil, err
			}
			if !validOID(string(rule)) {
				return nil, nil, protoErr("filter: matchingRule %q", rule)
			}
			f.rule = string(rule)
		}
		if len(v) > 0 && v[0] == 0x82 {
			if f.attr, v, err = getAttrDesc(v, 0x82, "filter: type"); err != nil {
				return nil, nil, err
			}
		}
		if f.rule == "" && f.attr == "" {
			return nil, nil, protoErr("filter: extensible match without rule or type")
		}
		if f.value, v, err = expect(v, 0x83, "filter: matchValue"); err != nil {
			return nil, nil, err
		}
		if len(v) > 0 {
			var d []byte
			if d, v, err = expect(v, 0x84, "filter: dnAttributes"); err != nil {
				return nil, nil, err
			}
			if f.dnAttrs, err = boolValue(d, "filter: dnAttributes"); err != nil {
				return nil, nil, err
			}
		}
		if err := done(v, "filter: extensible"); err != nil {
			return nil, nil, err
		}
	}
	return f, rest, nil
}

func decodeCompare(b []byte) (*compareRequest, error) {
	r := &compareRequest{}
	var err error
	if r.dn, b, err = getText(b, 0x04, "compare: entry"); err != nil {
		return nil, err
	}
	ava, b, err := expect(b, 0x30, "compare: ava")
	if err != nil {
		return nil, err
	}
	if r.attr, ava, err = getAttrDesc(ava, 0x04, "compare: attribute"); err != nil {
		return nil, err
	}
	if r.value, ava, err = expect(ava, 0x04, "compare: value"); err != nil {
		return nil, err
	}
	if err := done(ava, "compare: ava"); err != nil {
		return nil, err
	}
	return r, done(b, "compare")
}

// decodeAttribute reads a PartialAttribute (SEQUENCE { type, SET OF value }).
func decodeAttribute(b []byte, what string, needValues bool) (attribute, []byte, error) {
	var a attribute
	s, rest, err := expect(b, 0x30, what)
	if err != nil {
		return a, nil, err
	}
	if a.typ, s, err = getAttrDesc(s, 0x04, what+": type"); err != nil {
		return a, nil, err
	}
	vals, s, err := expect(s, 0x31, what+": values")
	if err != nil {
		return a, nil, err
	}
	for len(vals) > 0 {
		var v []byte
		if v, vals, err = expect(vals, 0x04, what+": value"); err != nil {
			return a, nil, err
		}
		a.vals = append(a.vals, v)
	}
	if needValues && len(a.vals) == 0 {
		return a, nil, protoErr("%s: no values", what)
	}
	return a, rest, done(s, what)
}

func decodeModify(b []byte) (*modifyRequest, error) {
	r := &modifyRequest{}
	var err error
	if r.dn, b, err = getText(b, 0x04, "modify: object"); err != nil {
		return nil, err
	}
	list, b, err := expect(b, 0x30, "modify: changes")
	if err != nil {
		return nil, err
	}
	for len(list) > 0 {
		var s []byte
		if s, list, err = expect(list, 0x30, "modify: change"); err != nil {
			return nil, err
		}
		var c change
		if c.op, s, err = getEnum(s, "modify: operation", 3); err != nil {
			return nil, err
		}
		if c.attr, s, err = decodeAttribute(s, "modify: modification", false); err != nil {
			return nil, err
		}
		if err := done(s, "modify: change"); err != nil {
			return nil, err
		}
		r.changes = append(r.changes, c)
	}
	return r, done(b, "modify")
}

func decodeAdd(b []byte) (*addRequest, error) {
	r := &addRequest{}
	var err error
	if r.dn, b, err = getText(b, 0x04, "add: entry"); err != nil {
		return nil, err
	}
	list, b, err := expect(b, 0x30, "add: attributes")
	if err != nil {
		return nil, err
	}
	for len(list) > 0 {
		var a attribute
		if a, list, err = decodeAttribute(list, "add: attribute", true); err != nil {
			return nil, err
		}
		r.attrs = append(r.attrs, a)
	}
	return r, done(b, "add")
}

func decodeModDN(b []byte) (*modDNRequest, error) {
	r := &modDNRequest{}
	var err error
	if r.dn, b, err = getText(b, 0x04, "modDN: entry"); err != nil {
		return nil, err
	}
	if r.newRDN, b, err = getText(b, 0x04, "modDN: newrdn"); err != nil {
		return nil, err
	}
	v, b, err := expect(b, 0x01, "modDN: deleteoldrdn")
	if err != nil {
		return nil, err
	}
	if r.deleteOld, err = boolValue(v, "modDN: deleteoldrdn"); err != nil {
		return nil, err
	}
	if len(b) > 0 {
		if r.newSuperior, b, err = getText(b, 0x80, "modDN: newSuperior"); err != nil {
			return nil, err
		}
		r.hasSuperior = true
	}
	return r, done(b, "modDN")
}

func decodeExtended(b []byte) (*extendedRequest, error) {
	r := &extendedRequest{}
	var err error
	if r.name, b, err = getText(b, 0x80, "extended: requestName"); err != nil {
		return nil, err
	}
	if !validNumericOID(r.name) {
		return nil, protoErr("extended: requestName %q is not a numericoid", r.name)
	}
	if len(b) > 0 {
		if r.value, b, err = expect(b, 0x81, "extended: requestValue"); err != nil {
			return nil, err
		}
		r.hasValue = true
	}
	return r, done(b, "extended")
}
