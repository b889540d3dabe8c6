package smtp

import "strings"

// ownsAddress reports whether from is one of addrs: the domain compared
// case-insensitively, the local part exactly (RFC 5321 §2.4: local parts
// may be case-sensitive). An address without '@' must match exactly.
func ownsAddress(addrs []string, from string) bool {
	fl, fd, fok := splitAddress(from)
	for _, a := range addrs {
		al, ad, aok := splitAddress(strings.TrimSpace(a))
		switch {
		case fok != aok:
		case !fok:
			if a == from {
				return true
			}
		case fl == al && strings.EqualFold(fd, ad):
			return true
		}
	}
	return false
}

// splitAddress splits at the last '@' (a quoted local part may hold '@').
func splitAddress(a string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return a, "", false
	}
	return a[:i], a[i+1:], true
}
