package ldap

// The encoder for what decode.go returns: every upstream request is built
// here from decoded values, in DER-shaped BER (definite, minimal lengths).

// el appends one element with identifier id around content.
func el(b []byte, id byte, content []byte) []byte {
	b = appendLength(append(b, id), len(content))
	return append(b, content...)
}

// elInt appends an INTEGER or ENUMERATED (id) of a non-negative value.
func elInt(b []byte, id byte, v int64) []byte {
	n := len(b)
	b = appendInt(b, v)
	b[n] = id
	return b
}

func elBool(b []byte, id byte, v bool) []byte {
	if v {
		return append(b, id, 1, 0xff)
	}
	return append(b, id, 1, 0)
}

func elStr(b []byte, id byte, s string) []byte {
	b = appendLength(append(b, id), len(s))
	return append(b, s...)
}

// encodeOp re-encodes the protocolOp of r.
func encodeOp(r *request) []byte {
	switch r.tag {
	case tagSearchRequest:
		return encodeSearch(r.search)
	case tagCompareRequest:
		c := r.compare
		ava := el(elStr(nil, 0x04, c.attr), 0x04, c.value)
		return el(nil, 0x6e, el(elStr(nil, 0x04, c.dn), 0x30, ava))
	case tagModifyRequest:
		var list []byte
		for _, ch := range r.modify.changes {
			list = el(list, 0x30, encodeAttribute(elInt(nil, 0x0a, ch.op), ch.attr))
		}
		return el(nil, 0x66, el(elStr(nil, 0x04, r.modify.dn), 0x30, list))
	case tagAddRequest:
		var list []byte
		for _, a := range r.add.attrs {
			list = encodeAttribute(list, a)
		}
		return el(nil, 0x68, el(elStr(nil, 0x04, r.add.dn), 0x30, list))
	case tagDelRequest:
		return elStr(nil, 0x4a, r.del)
	case tagModDNRequest:
		d := r.modDN
		b := elBool(elStr(elStr(nil, 0x04, d.dn), 0x04, d.newRDN), 0x01, d.deleteOld)
		if d.hasSuperior {
			b = elStr(b, 0x80, d.newSuperior)
		}
		return el(nil, 0x6c, b)
	case tagExtendedRequest:
		e := r.extended
		b := elStr(nil, 0x80, e.name)
		if e.hasValue {
			b = el(b, 0x81, e.value)
		}
		return el(nil, 0x77, b)
	case tagBindRequest:
		bd := r.bind
		b := elStr(elInt(nil, 0x02, bd.version), 0x04, bd.name)
		if bd.simple {
			b = elStr(b, 0x80, bd.password)
		} else {
			b = el(b, 0xa3, elStr(nil, 0x04, bd.mech))
		}
		return el(nil, 0x60, b)
	case tagAbandonRequest:
		return elInt(nil, 0x50, r.abandonID)
	case tagUnbindRequest:
		return []byte{0x42, 0x00}
	}
	return nil
}

func encodeAttribute(b []byte, a attribute) []byte {
	var vals []byte
	for _, v := range a.vals {
		vals = el(vals, 0x04, v)
	}
	return el(b, 0x30, el(elStr(nil, 0x04, a.typ), 0x31, vals))
}

func encodeSearch(s *searchRequest) []byte {
	b := make([]byte, 0, 128)
	b = elStr(b, 0x04, s.base)
	b = elInt(b, 0x0a, s.scope)
	b = elInt(b, 0x0a, s.deref)
	b = elInt(b, 0x02, s.sizeLimit)
	b = elInt(b, 0x02, s.timeLimit)
	b = elBool(b, 0x01, s.typesOnly)
	b = encodeFilter(b, s.filter)
	var attrs []byte
	for _, a := range s.attrs {
		attrs = elStr(attrs, 0x04, a)
	}
	b = el(b, 0x30, attrs)
	return el(make([]byte, 0, len(b)+6), 0x63, b)
}

func encodeFilter(b []byte, f *filter) []byte {
	id := byte(0xa0 | f.kind)
	var v []byte
	switch f.kind {
	case filterAnd, filterOr, filterNot:
		for _, s := range f.subs {
			v = encodeFilter(v, s)
		}
	case filterEquality, filterGreater, filterLess, filterApprox:
		v = el(elStr(nil, 0x04, f.attr), 0x04, f.value)
	case filterSubstrings:
		var parts []byte
		for _, p := range f.parts {
			parts = el(parts, byte(0x80+p.kind), p.value)
		}
		v = el(elStr(nil, 0x04, f.attr), 0x30, parts)
	case filterPresent:
		return elStr(b, 0x87, f.attr)
	case filterExtensible:
		if f.rule != "" {
			v = elStr(v, 0x81, f.rule)
		}
		if f.attr != "" {
			v = elStr(v, 0x82, f.attr)
		}
		v = el(v, 0x83, f.value)
		if f.dnAttrs {
			v = elBool(v, 0x84, true)
		}
	}
	return el(b, id, v)
}

// encodeControl encodes one Control (RFC 4511 §4.1.11).
func encodeControl(c control) []byte {
	b := elStr(nil, 0x04, c.oid)
	if c.critical {
		b = elBool(b, 0x01, true)
	}
	if c.hasValue {
		b = el(b, 0x04, c.value)
	}
	return el(nil, 0x30, b)
}
