package ldap

// The control allow-list (#13). A client's control reaches the upstream
// only when its OID is listed here for the operation, and then only
// re-encoded from its decoded value. Any other control: critical →
// unavailableCriticalExtension (12), non-critical → dropped (RFC 4511
// §4.1.11 lets a server ignore a non-critical control). A client's own
// proxied-authorization control is refused with insufficientAccessRights
// (50): only Legate decides whom a request runs as. Root DSE reads run as
// the service account and never carry a client control.
//
// The list, for SearchRequest only:
//
//   - 1.2.840.113556.1.4.319, Simple Paged Results (RFC 2696): address
//     books (Thunderbird, Outlook, Evolution) and sync tools page large
//     directories; without it they hit the server's size limit.
//   - 1.2.840.113556.1.4.473, Server Side Sort (RFC 2891): address-book
//     clients ask for entries sorted by cn/sn; critical in some, so
//     dropping it would fail their searches. Its sort keys are attribute
//     types and, in service mode, are confined like filter attributes
//     (sorting by a hidden attribute would reveal its order).
//
// Nothing else: ManageDsaIT, Relax, Assertion, Pre/Post-read,
// Dereference, Persistent Search/Sync and the like change what a request
// does or reveals under the identity it runs as; none is needed by the
// clients Legate serves.
const (
	oidServerSideSort = "1.2.840.113556.1.4.473"
)

// resultUnavailableCriticalExtension answers a critical control that is
// not on the allow-list.
const resultUnavailableCriticalExtension = 12

// controlOutcome is what filterControls decided.
type controlOutcome struct {
	raws     [][]byte // re-encoded controls to send
	paged    bool
	sortKeys []string // attribute types of a server-side sort
	code     int      // non-zero: answer the request with this code
	diag     string
}

// filterControls applies the allow-list to r's controls. A malformed value
// of an allowed control is a protocol error (the connection ends).
func filterControls(r *request) (controlOutcome, error) {
	var out controlOutcome
	for _, k := range r.controls {
		switch {
		case k.oid == oidProxiedAuthz || k.oid == oidProxiedAuthzV1:
			return controlOutcome{code: resultInsufficientAccess, diag: "proxied authorization control not allowed"}, nil
		case k.oid == oidPagedResults && r.tag == tagSearchRequest:
			v, err := pagedValue(k)
			if err != nil {
				return out, err
			}
			out.raws = append(out.raws, encodeControl(control{oid: k.oid, critical: k.critical, value: v, hasValue: true}))
			out.paged = true
		case k.oid == oidServerSideSort && r.tag == tagSearchRequest:
			v, keys, err := sortValue(k)
			if err != nil {
				return out, err
			}
			out.raws = append(out.raws, encodeControl(control{oid: k.oid, critical: k.critical, value: v, hasValue: true}))
			out.sortKeys = keys
		case k.critical:
			return controlOutcome{code: resultUnavailableCriticalExtension, diag: "critical control not supported: " + k.oid}, nil
		}
	}
	return out, nil
}

// pagedValue decodes and re-encodes realSearchControlValue ::= SEQUENCE {
// size INTEGER (0..maxInt), cookie OCTET STRING } (RFC 2696 §2).
func pagedValue(k control) ([]byte, error) {
	if !k.hasValue {
		return nil, protoErr("paged results control without a value")
	}
	s, rest, err := expect(k.value, 0x30, "paged results")
	if err != nil {
		return nil, err
	}
	if err := done(rest, "paged results"); err != nil {
		return nil, err
	}
	size, s, err := getInt(s, 0x02, "paged results: size")
	if err != nil {
		return nil, err
	}
	cookie, s, err := expect(s, 0x04, "paged results: cookie")
	if err != nil {
		return nil, err
	}
	if err := done(s, "paged results"); err != nil {
		return nil, err
	}
	return el(nil, 0x30, el(elInt(nil, 0x02, size), 0x04, cookie)), nil
}

// sortValue decodes and re-encodes SortKeyList ::= SEQUENCE OF SEQUENCE {
// attributeType AttributeDescription, orderingRule [0] MatchingRuleId
// OPTIONAL, reverseOrder [1] BOOLEAN DEFAULT FALSE } (RFC 2891 §1.1).
func sortValue(k control) ([]byte, []string, error) {
	if !k.hasValue {
		return nil, nil, protoErr("sort control without a value")
	}
	list, rest, err := expect(k.value, 0x30, "sort keys")
	if err != nil {
		return nil, nil, err
	}
	if err := done(rest, "sort keys"); err != nil {
		return nil, nil, err
	}
	var out []byte
	var types []string
	for len(list) > 0 {
		var s []byte
		if s, list, err = expect(list, 0x30, "sort key"); err != nil {
			return nil, nil, err
		}
		var typ, rule string
		var reverse bool
		if typ, s, err = getAttrDesc(s, 0x04, "sort key: type"); err != nil {
			return nil, nil, err
		}
		if len(s) > 0 && s[0] == 0x80 {
			var v []byte
			if v, s, err = expect(s, 0x80, "sort key: orderingRule"); err != nil {
				return nil, nil, err
			}
			if !validOID(string(v)) {
				return nil, nil, protoErr("sort key: orderingRule %q", v)
			}
			rule = string(v)
		}
		if len(s) > 0 {
			var v []byte
			if v, s, err = expect(s, 0x81, "sort key: reverseOrder"); err != nil {
				return nil, nil, err
			}
			if reverse, err = boolValue(v, "sort key: reverseOrder"); err != nil {
				return nil, nil, err
			}
		}
		if err := done(s, "sort key"); err != nil {
			return nil, nil, err
		}
		key := elStr(nil, 0x04, typ)
		if rule != "" {
			key = elStr(key, 0x80, rule)
		}
		if reverse {
			key = elBool(key, 0x81, true)
		}
		out = el(out, 0x30, key)
		types = append(types, typ)
	}
	if len(types) == 0 {
		return nil, nil, protoErr("sort control without keys")
	}
	return el(nil, 0x30, out), types, nil
}
