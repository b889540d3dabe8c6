package cli

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/store"
)

// hostile are client-chosen names that would act on a terminal if printed raw.
var hostile = []string{
	"\x1b]0;pwned\x07alice",        // OSC: sets the window title
	"\x1b[2J\x1b[31mroot\x1b[0m",   // SGR and erase display
	"al\x00ice",                    // NUL
	"bob\rmallory",                 // CR: overwrite the line
	"x\ny\tz",                      // line and column breaks
	"\u202eecil\u2066",             // bidi override and isolate
	"\x9b31m",                      // C1 CSI as a rune
	string([]byte{'a', 0x9b, 'b'}), // C1 CSI as a raw (invalid UTF-8) byte
}

// raw reports whether s holds a byte or rune that must never reach the terminal.
func raw(s string) bool {
	for _, r := range s {
		if r == 0x1b || r == 0 || r == '\r' || r == 0x07 || r == 0x9b || r == 0x202e || r == 0x2066 || r == 0xfffd {
			return true
		}
	}
	return strings.Contains(s, "\x9b")
}

func TestSafe(t *testing.T) {
	for _, in := range hostile {
		out := safe(in)
		if raw(out) || strings.ContainsAny(out, "\n\t") {
			t.Errorf("safe(%q) = %q: still raw", in, out)
		}
	}
	for in, want := range map[string]string{
		"alice":                       "alice",
		"uid=a\\,b,dc=example,dc=com": "uid=a\\,b,dc=example,dc=com",
		"Jürgen 日本":                   "Jürgen 日本",
		"\x1b[31m":                    `\x1b[31m`,
		"a\x00b\rc":                   `a\x00b\rc`,
		"\u202e":                      `\u202e`,
		"\x9b":                        `\x9b`,
	} {
		if got := safe(in); got != want {
			t.Errorf("safe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTextOutputEscapesClientNames feeds hostile names to every text output
// of the CLI (audit, sessions, report, apppass list) and checks nothing raw
// comes out, while the same data as JSON keeps the exact names.
func TestTextOutputEscapesClientNames(t *testing.T) {
	now := time.Now()
	for _, name := range hostile {
		var b bytes.Buffer
		printAudit(&b, []store.AuditRecord{{Time: now, Action: "login", Via: "imap", User: name, IP: "192.0.2.1",
			Outcome: "deny", Rule: "unknown_user", Client: name, Detail: name}})
		printSessions(&b, []session.Info{{ID: "s1", User: name, Protocol: "imap", IP: netip.MustParseAddr("192.0.2.1"),
			Client: name, Started: now}})
		printReport(&b, control.Report{
			Rows:      []control.ReportRow{{User: name, AppPasswordID: "ap1", Name: name, Protocols: []string{"imap"}, Clients: []string{name}, LastIP: name, FirstSeen: now, LastSeen: now, Logins: 1}},
			NeverUsed: []control.ReportUnused{{User: name, AppPasswordID: "ap2", Name: name, Created: now}},
		})
		printAppPasswords(&b, []control.Listed{{AppPassword: store.AppPassword{ID: "ap1", User: name, Name: name, Created: now}, Status: "active"}})
		out := b.String()
		if raw(out) {
			t.Errorf("text output for %q holds raw control characters:\n%q", name, out)
		}
		if !strings.Contains(out, safe(name)) {
			t.Errorf("text output for %q lacks the escaped name %q", name, safe(name))
		}
		// Every line is a table row: no client can add or split lines.
		if n := strings.Count(out, "\n"); n != 11 {
			t.Errorf("text output for %q has %d lines, want 11:\n%s", name, n, out)
		}

		if !utf8.ValidString(name) {
			continue // JSON output replaces invalid UTF-8; nothing to compare
		}
		b.Reset()
		writeJSON(&b, []control.Listed{{AppPassword: store.AppPassword{Name: name}}})
		var back []control.Listed
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || back[0].Name != name {
			t.Errorf("JSON round trip of %q: %v %q", name, err, back)
		}
	}
}
