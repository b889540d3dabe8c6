package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
)

// TestMain lets the test binary serve as the Legate and relay child
// processes, the way the command re-executes itself.
func TestMain(m *testing.M) {
	if code, ok := childMain(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestSmoke runs every measurement briefly against the real servers and
// checks that each produces a table with non-zero numbers. It skips when a
// server is missing, and fails then when CI=true.
func TestSmoke(t *testing.T) {
	o := options{Duration: 200 * time.Millisecond, Sessions: 2, Idle: 20, BigMessage: 1_000_000}
	tests := []struct {
		proto string
		bins  []string
		// want are the recorded values that must be positive; RSS
		// values are only checked to exist (GC noise can make a small
		// growth negative).
		want []string
	}{
		{"imap", []string{"dovecot"}, []string{
			"fetch direct Dovecot", "fetch bare relay", "fetch Legate",
			"logins plain direct Dovecot", "logins plain bare relay", "logins plain Legate",
			"logins TLS direct Dovecot", "logins TLS bare relay", "logins TLS Legate",
			"idle plain fds", "idle TLS fds", "idle plain rss", "idle TLS rss",
			"idle plain dovecot imap processes", "idle TLS dovecot imap processes",
		}},
		{"smtp", []string{"dovecot", "smtp-sink"}, []string{
			"messages direct Dovecot", "messages Legate", "big direct Dovecot", "big Legate", "big rss",
		}},
		{"ldap", []string{"slapd", "slapadd"}, []string{
			"binds direct slapd", "binds Legate", "searches direct slapd", "searches Legate",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.proto, func(t *testing.T) {
			testenv.Require(t, tc.bins...)
			sec := runner(tc.proto)(context.Background(), t, o)
			md := sec.markdown()
			if !strings.Contains(md, "| measurement |") && !strings.Contains(md, "| idle") {
				t.Errorf("markdown has no table:\n%s", md)
			}
			if strings.Count(md, "PASS")+strings.Count(md, "MISS") == 0 {
				t.Errorf("markdown has no PASS/MISS verdict:\n%s", md)
			}
			for _, name := range tc.want {
				v, ok := sec.Values[name]
				switch {
				case !ok:
					t.Errorf("value %q: missing; got %v", name, sec.Values)
				case !strings.Contains(name, "rss") && v <= 0:
					t.Errorf("value %q: got %v, want > 0", name, v)
				}
			}
			t.Logf("%s", md)
		})
	}
}

// TestRunUsage checks the command line: bad flags are usage errors (2).
func TestRunUsage(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"-only", "pop3"}, 2},
		{[]string{"-duration", "0s"}, 2},
		{[]string{"-sessions", "0"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"-nosuchflag"}, 2},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		if got := run(tc.args, &out, &errb); got != tc.want {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", tc.args, got, tc.want, errb.String())
		}
	}
}

// TestRunWritesReport runs the LDAP section through the command line and
// checks the -out file.
func TestRunWritesReport(t *testing.T) {
	testenv.Require(t, "slapd", "slapadd")
	out := filepath.Join(t.TempDir(), "bench.md")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-only", "ldap", "-duration", "200ms", "-sessions", "2", "-out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("run: exit %d, want 0; stderr:\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# legate-bench", "CPUs", "go1.", "## LDAP (issue 6)", "| simple binds"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
	if got := stdout.String(); got != string(b) {
		t.Errorf("stdout and -out differ:\nstdout:\n%s\nfile:\n%s", got, b)
	}
}

// TestLiteralSize checks the IMAP client's literal detection.
func TestLiteralSize(t *testing.T) {
	tests := []struct {
		line string
		want int64
	}{
		{"* 1 FETCH (BODY[] {10240}\r\n", 10240},
		{"* 1 FETCH (BODY[] {0}\r\n", 0},
		{"a OK done\r\n", -1},
		{"* OK {x}\r\n", -1},
		{"* 1 FETCH (FLAGS (\\Seen))\r\n", -1},
		{"{12+}\r\n", 12},
	}
	for _, tc := range tests {
		if got := literalSize(tc.line); got != tc.want {
			t.Errorf("literalSize(%q) = %d, want %d", tc.line, got, tc.want)
		}
	}
}
