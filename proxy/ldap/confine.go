package ldap

import (
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Service-mode confinement (Options.Authz = "service"): requests run as
// the service account, so Legate confines both what goes in and what comes
// out. Base and entry DNs must lie within Options.SearchBases; attribute
// types named in filters (every branch, substrings, extensible match),
// Compare assertions, requested attribute lists and sort keys must be in
// Options.Attributes, or the request gets insufficientAccessRights (50)
// (#13.4); search entries keep only those attributes.
//
// Types compare case-insensitively with options (";lang-x") stripped. A
// numeric OID is not resolved to its name: it is accepted only when
// Attributes lists that OID itself, otherwise refused.

// attrFilter is the set of Options.Attributes.
type attrFilter struct{ keep map[string]bool }

func newAttrFilter(attrs []string) *attrFilter {
	f := &attrFilter{keep: make(map[string]bool, len(attrs))}
	for _, a := range attrs {
		f.keep[strings.ToLower(a)] = true
	}
	return f
}

// allows reports whether attribute description desc is in the set.
func (f *attrFilter) allows(desc string) bool {
	typ, _, _ := strings.Cut(desc, ";")
	return f.keep[strings.ToLower(typ)]
}

// allowsFilter checks every attribute type a filter names. An extensible
// match without a type matches any attribute: refused.
func (f *attrFilter) allowsFilter(fl *filter) bool {
	switch fl.kind {
	case filterAnd, filterOr, filterNot:
		for _, s := range fl.subs {
			if !f.allowsFilter(s) {
				return false
			}
		}
		return true
	case filterExtensible:
		return fl.attr != "" && !fl.dnAttrs && f.allows(fl.attr)
	}
	return f.allows(fl.attr)
}

// allowsSelectors checks a requested attribute list: "*", "+" and "1.1"
// select nothing by name (the entries are stripped anyway); anything else
// must be in the set.
func (f *attrFilter) allowsSelectors(attrs []string) bool {
	for _, a := range attrs {
		switch a {
		case "*", "+", "1.1":
			continue
		}
		if !f.allows(a) {
			return false
		}
	}
	return true
}

// apply rewrites a SearchResultEntry protocolOp from the upstream, keeping
// only the attributes in the set.
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
		if f.allows(string(a.Children[0].ByteValue)) {
			list.AppendChild(a)
		}
	}
	out.AppendChild(list)
	return out.Bytes(), nil
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
