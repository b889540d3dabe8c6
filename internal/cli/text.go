package cli

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// safe makes a string that a client chose (a login name, a bind DN, an IMAP
// ID, an EHLO name, an app password's name) harmless to print on the
// operator's terminal: control characters (C0, DEL, C1: ESC starts OSC and
// SGR sequences, CR rewrites the line, NUL, tab would shift tabwriter
// columns), Unicode format characters (bidi overrides reorder what follows)
// and invalid UTF-8 are written as Go-style escapes (\x1b, \r, \u202e).
// Printable text, backslashes included, is unchanged. Every text (non-JSON)
// output of a field a client could have chosen goes through safe; JSON
// output escapes on its own.
func safe(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			// Non-ASCII: decide rune by rune (most of it is fine).
			for _, r := range s[i:] {
				if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
					return true
				}
			}
			return false
		}
	}
	return false
}

// safeList escapes each element and joins them with sep.
func safeList(ss []string, sep string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = safe(s)
	}
	return strings.Join(out, sep)
}

// safeLines escapes s but keeps its line breaks: for error messages, which
// may hold several lines (config problems) and a client-chosen name.
func safeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = safe(l)
	}
	return strings.Join(lines, "\n")
}
