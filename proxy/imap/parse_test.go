package imap

import (
	"bufio"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(floodAddrEnv); addr != "" {
		// The child process of TestIDFloodCostsConstantWork.
		os.Exit(floodClient(addr, os.Getenv(floodCmdEnv), os.Getenv(floodSecretEnv)))
	}
	goleak.VerifyTestMain(m)
}

func parseAll(input string, maxLine, maxLit int) ([]*command, error) {
	p := &parser{r: bufio.NewReaderSize(strings.NewReader(input), 4096), maxLine: maxLine, maxLiteral: maxLit,
		cont: func() error { return nil }}
	var out []*command
	for {
		cmd, err := p.readCommand()
		if err != nil {
			return out, err
		}
		out = append(out, cmd)
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in       string
		tag, cmd string
		args     []string // atoms and strings as values; "(" and ")" for lists
		err      error
	}{
		{in: "a1 CAPABILITY\r\n", tag: "a1", cmd: "CAPABILITY"},
		{in: "a1 login alice secret\r\n", tag: "a1", cmd: "LOGIN", args: []string{"alice", "secret"}},
		{in: "a1 LOGIN \"al\\\"ice\" \"p\\\\w\"\n", tag: "a1", cmd: "LOGIN", args: []string{`al"ice`, `p\w`}},
		{in: "a1 LOGIN {5}\r\nalice {2+}\r\npw\r\n", tag: "a1", cmd: "LOGIN", args: []string{"alice", "pw"}},
		{in: "a1 LOGIN alice*legate pw\r\n", tag: "a1", cmd: "LOGIN", args: []string{"alice*legate", "pw"}},
		{in: "a ID (\"name\" \"x\" \"os\" NIL)\r\n", tag: "a", cmd: "ID", args: []string{"(", "name", "x", "os", "NIL", ")"}},
		{in: "a AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n", tag: "a", cmd: "AUTHENTICATE", args: []string{"PLAIN", "AGFsaWNlAHB3"}},
		{in: "a LOGIN {0}\r\n {0}\r\n\r\n", tag: "a", cmd: "LOGIN", args: []string{"", ""}},
		{in: "\r\n", err: errSyntax},
		{in: "a\r\n", err: errSyntax},
		{in: "+a NOOP\r\n", err: errSyntax},
		{in: "a LOGIN \"unterminated\r\n", err: errSyntax},
		{in: "a LOGIN \"bad\\escape\"\r\n", err: errSyntax},
		{in: "a LOGIN {x}\r\n", err: errSyntax},
		{in: "a LOGIN {5} x\r\n", err: errSyntax},
		{in: "a LOGIN {99999999999}\r\n", err: errSyntax},
		{in: "a LOGIN {101}\r\n", err: errLiteralLimit},
		{in: "a LOGIN {4294967295+}\r\n", err: errLiteralLimit},
		{in: "a LOGIN " + strings.Repeat("x", 200) + "\r\n", err: errLineTooLong},
		{in: "a LOGIN {3}\r\nabc" + strings.Repeat(" y", 100) + "\r\n", err: errLineTooLong},
		{in: "a LOGIN {5}\r\nab", err: io.ErrUnexpectedEOF},
		{in: "a NOOP", err: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		cmds, err := parseAll(tt.in, 100, 100)
		if tt.err != nil {
			if len(cmds) != 0 || !errors.Is(err, tt.err) {
				t.Errorf("parse %q: got %d commands, error %v; want error %v", tt.in, len(cmds), err, tt.err)
			}
			continue
		}
		if len(cmds) != 1 || !errors.Is(err, io.EOF) {
			t.Errorf("parse %q: got %d commands, error %v; want 1 command then EOF", tt.in, len(cmds), err)
			continue
		}
		c := cmds[0]
		var args []string
		for _, a := range c.args {
			switch a.kind {
			case tokLParen:
				args = append(args, "(")
			case tokRParen:
				args = append(args, ")")
			default:
				args = append(args, a.val)
			}
		}
		if c.tag != tt.tag || c.name != tt.cmd || strings.Join(args, "|") != strings.Join(tt.args, "|") {
			t.Errorf("parse %q: got tag %q cmd %q args %q, want %q %q %q", tt.in, c.tag, c.name, args, tt.tag, tt.cmd, tt.args)
		}
	}
}

// TestParseHugeLiteralDoesNotAllocate checks that an announced literal
// beyond the limit is refused before any buffer is allocated for it.
func TestParseHugeLiteralDoesNotAllocate(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := parseAll("a LOGIN {4000000000+}\r\n", 8192, 8192); !errors.Is(err, errLiteralLimit) {
			t.Fatalf("got %v, want errLiteralLimit", err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 4<<20 {
		t.Errorf("100 parses allocated %d bytes, want under 4 MiB", d)
	}
}

// FuzzParseCommand feeds arbitrary bytes to the command parser: it must
// never panic, and what it returns is bounded by the limits.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"a LOGIN alice secret\r\n",
		"a LOGIN {5}\r\nalice {3+}\r\npw1\r\n",
		"a AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n",
		"a ID (\"name\" \"x\" \"version\" NIL)\r\n",
		"a LOGIN \"a\\\"b\" \"c\\\\d\"\r\nb NOOP\r\n",
		"a LOGIN {999999999999}\r\n",
		"a ID (\"name\" \"" + strings.Repeat("x", 400) + "\")\r\n",
	} {
		f.Add([]byte(s))
	}
	const maxLine, maxLit, maxID = 256, 128, 512
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &parser{r: bufio.NewReaderSize(strings.NewReader(string(data)), 64), maxLine: maxLine, maxLiteral: maxLit,
			maxIDLine: maxID, cont: func() error { return nil }}
		for range 100 {
			cmd, err := p.readCommand()
			if err != nil {
				var lit *literalError
				var syn *syntaxError
				if !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errLineTooLong) ||
					errors.As(err, &lit) || errors.As(err, &syn)) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				if errors.As(err, &lit) || errors.As(err, &syn) {
					continue
				}
				return
			}
			total := len(cmd.tag) + len(cmd.name)
			for _, a := range cmd.args {
				total += len(a.val)
			}
			limit := maxLine
			if cmd.name == "ID" {
				limit = maxID
			}
			if max := limit + maxLiterals*maxLit; total > max {
				t.Fatalf("command holds %d bytes, want at most %d", total, max)
			}
			if cmd.tag == "" || cmd.name == "" {
				t.Fatalf("command without tag or name: %+v", cmd)
			}
		}
	})
}
