package demo

import (
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// matchFilter evaluates a compiled search filter (ldap.CompileFilter)
// against e. Values compare case-insensitively, as for the directory
// strings of the demo's entries. Extensible matches are never true.
func matchFilter(f *ber.Packet, e *dirEntry) bool {
	switch f.Tag {
	case ldap.FilterAnd:
		for _, c := range f.Children {
			if !matchFilter(c, e) {
				return false
			}
		}
		return true
	case ldap.FilterOr:
		for _, c := range f.Children {
			if matchFilter(c, e) {
				return true
			}
		}
		return false
	case ldap.FilterNot:
		return len(f.Children) == 1 && !matchFilter(f.Children[0], e)
	case ldap.FilterPresent:
		return len(e.values(packetString(f))) > 0
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual:
		if len(f.Children) != 2 {
			return false
		}
		want := strings.ToLower(packetString(f.Children[1]))
		for _, v := range e.values(packetString(f.Children[0])) {
			v = strings.ToLower(v)
			switch f.Tag {
			case ldap.FilterGreaterOrEqual:
				if v >= want {
					return true
				}
			case ldap.FilterLessOrEqual:
				if v <= want {
					return true
				}
			default:
				if v == want {
					return true
				}
			}
		}
		return false
	case ldap.FilterSubstrings:
		if len(f.Children) != 2 {
			return false
		}
		for _, v := range e.values(packetString(f.Children[0])) {
			if matchSubstrings(strings.ToLower(v), f.Children[1].Children) {
				return true
			}
		}
		return false
	}
	return false
}

// matchSubstrings matches v against initial, any and final parts in order.
func matchSubstrings(v string, parts []*ber.Packet) bool {
	for _, p := range parts {
		s := strings.ToLower(packetString(p))
		switch p.Tag {
		case ldap.FilterSubstringsInitial:
			if !strings.HasPrefix(v, s) {
				return false
			}
			v = v[len(s):]
		case ldap.FilterSubstringsAny:
			i := strings.Index(v, s)
			if i < 0 {
				return false
			}
			v = v[i+len(s):]
		case ldap.FilterSubstringsFinal:
			if !strings.HasSuffix(v, s) {
				return false
			}
			v = ""
		}
	}
	return true
}

func packetString(p *ber.Packet) string {
	if s, ok := p.Value.(string); ok {
		return s
	}
	return p.Data.String()
}
