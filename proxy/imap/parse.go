package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Parser errors. errLineTooLong and a too-big non-synchronizing literal end
// the connection (the stream cannot be resynchronised); the others are
// answered with BAD.
var (
	errLineTooLong  = errors.New("imap: line too long")
	errLiteralLimit = errors.New("imap: literal too big")
	errSyntax       = errors.New("imap: syntax error")
)

// literalError reports an oversize literal; Sync says whether the client is
// waiting for a continuation (then it sent nothing more and a BAD keeps the
// stream in sync).
type literalError struct {
	Tag  string
	Size uint64
	Sync bool
}

func (e *literalError) Error() string {
	return fmt.Sprintf("imap: literal of %d bytes too big", e.Size)
}
func (e *literalError) Unwrap() error { return errLiteralLimit }

// syntaxError carries the tag when it could be read, so the BAD is tagged.
type syntaxError struct {
	Tag string
	Msg string
}

func (e *syntaxError) Error() string { return "imap: syntax error: " + e.Msg }
func (e *syntaxError) Unwrap() error { return errSyntax }

type tokKind uint8

const (
	tokAtom   tokKind = iota // atom, including NIL
	tokString                // quoted string or literal
	tokLParen
	tokRParen
)

type token struct {
	kind tokKind
	val  string
}

// command is one parsed client command.
type command struct {
	tag  string
	name string // upper case
	args []token
}

// maxLiterals bounds the literals in one command.
const maxLiterals = 8

// parser reads commands from untrusted bytes with bounded memory: each line
// is at most maxLine bytes (without CRLF), each literal at most maxLiteral,
// and a command has at most maxLiterals literals.
type parser struct {
	r          *bufio.Reader
	maxLine    int
	maxLiteral int
	// maxIDLine, when larger than maxLine, is the line limit of an ID
	// command, whose RFC 2971 maxima need more than a usual line.
	maxIDLine int
	// cont is called before a synchronizing literal is read; it sends the
	// "+" continuation request.
	cont func() error
	line []byte // reused line buffer
}

// maxIDLine is the line limit for an ID command: RFC 2971 allows 30
// field-value pairs of up to 30 and 1024 octets, which quoted (every octet
// escaped at worst) take about 63,500 bytes.
const maxIDLine = 64 << 10

// readLine reads one line and returns it without CRLF (a bare LF is
// accepted). The result is only valid until the next call.
func (p *parser) readLine() ([]byte, error) {
	l, _, err := p.read(false)
	return l, err
}

// read reads one line; when idOK is set, a line that starts an ID command
// may be up to maxIDLine long. It also returns the limit that applied.
func (p *parser) read(idOK bool) ([]byte, int, error) {
	p.line = p.line[:0]
	limit := p.maxLine
	for {
		chunk, err := p.r.ReadSlice('\n')
		if len(p.line)+len(chunk) > limit+2 {
			if !idOK || limit >= p.maxIDLine || !isIDCommand(p.line, chunk) {
				return nil, 0, errLineTooLong
			}
			limit = p.maxIDLine
			if len(p.line)+len(chunk) > limit+2 {
				return nil, 0, errLineTooLong
			}
		}
		p.line = append(p.line, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(p.line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, err
		}
	}
	l := p.line[:len(p.line)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	if len(l) > limit {
		return nil, 0, errLineTooLong
	}
	return l, limit, nil
}

// isIDCommand reports whether the line made of a and b starts with
// "tag ID " (case-insensitive), the only command allowed a longer line.
func isIDCommand(a, b []byte) bool {
	var head [80]byte
	n := copy(head[:], a)
	n += copy(head[n:], b)
	h := head[:n]
	i := 0
	for i < len(h) && isAtomChar(h[i]) && h[i] != '+' && h[i] != '*' {
		i++
	}
	if i == 0 || i+4 > len(h) {
		return false
	}
	return h[i] == ' ' && (h[i+1]|0x20) == 'i' && (h[i+2]|0x20) == 'd' && h[i+3] == ' '
}

// readCommand reads and parses one command, literals included.
func (p *parser) readCommand() (*command, error) {
	line, limit, err := p.read(true)
	if err != nil {
		return nil, err
	}
	// A long ID line grew the buffer; let it go once parsed (the tokens
	// are copies).
	defer func() {
		if cap(p.line) > p.maxLine+2+p.r.Size() {
			p.line = nil
		}
	}()
	cmd := &command{}
	rest, err := cmd.head(line)
	if err != nil {
		return nil, err
	}
	total := len(line)
	for lits := 0; ; lits++ {
		lit, err := cmd.tokens(rest)
		if err != nil {
			return nil, err
		}
		if lit == nil {
			return cmd, nil
		}
		if lits == maxLiterals {
			return nil, &syntaxError{Tag: cmd.tag, Msg: "too many literals"}
		}
		if lit.size > uint64(p.maxLiteral) {
			return nil, &literalError{Tag: cmd.tag, Size: lit.size, Sync: !lit.plus}
		}
		if !lit.plus && p.cont != nil {
			if err := p.cont(); err != nil {
				return nil, err
			}
		}
		buf := make([]byte, lit.size)
		if _, err := io.ReadFull(p.r, buf); err != nil {
			return nil, err
		}
		cmd.args = append(cmd.args, token{kind: tokString, val: string(buf)})
		line, err = p.readLine()
		if err != nil {
			return nil, err
		}
		if total += len(line); total > limit {
			return nil, errLineTooLong
		}
		rest = line
	}
}

// head parses "tag SP name" and returns what follows the name.
func (c *command) head(line []byte) ([]byte, error) {
	i := 0
	for i < len(line) && isAtomChar(line[i]) && line[i] != '+' && line[i] != '*' {
		i++
	}
	if i == 0 || (i < len(line) && line[i] != ' ') {
		return nil, &syntaxError{Msg: "invalid tag"}
	}
	c.tag = string(line[:i])
	if i == len(line) {
		return nil, &syntaxError{Tag: c.tag, Msg: "missing command"}
	}
	line = line[i+1:]
	i = 0
	for i < len(line) && isAtomChar(line[i]) {
		i++
	}
	if i == 0 || (i < len(line) && line[i] != ' ') {
		return nil, &syntaxError{Tag: c.tag, Msg: "invalid command name"}
	}
	c.name = strings.ToUpper(string(line[:i]))
	return line[i:], nil
}

type literalSpec struct {
	size uint64
	plus bool
}

// tokens appends the arguments in s. When s ends with a literal
// announcement it returns it; the literal's bytes follow the line.
func (c *command) tokens(s []byte) (*literalSpec, error) {
	for len(s) > 0 {
		switch b := s[0]; {
		case b == ' ':
			s = s[1:]
		case b == '(':
			c.args = append(c.args, token{kind: tokLParen})
			s = s[1:]
		case b == ')':
			c.args = append(c.args, token{kind: tokRParen})
			s = s[1:]
		case b == '"':
			v, n, err := quoted(s)
			if err != nil {
				return nil, &syntaxError{Tag: c.tag, Msg: err.Error()}
			}
			c.args = append(c.args, token{kind: tokString, val: v})
			s = s[n:]
		case b == '{':
			lit, err := literalHeader(s)
			if err != nil {
				return nil, &syntaxError{Tag: c.tag, Msg: err.Error()}
			}
			return lit, nil
		default:
			i := 0
			for i < len(s) && isAtomChar(s[i]) {
				i++
			}
			if i == 0 {
				return nil, &syntaxError{Tag: c.tag, Msg: "unexpected character"}
			}
			c.args = append(c.args, token{kind: tokAtom, val: string(s[:i])})
			s = s[i:]
		}
	}
	return nil, nil
}

// quoted decodes the quoted string at the start of s and returns it and the
// bytes consumed.
func quoted(s []byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 == len(s) || (s[i+1] != '\\' && s[i+1] != '"') {
				return "", 0, errors.New("bad escape in quoted string")
			}
			i++
			b.WriteByte(s[i])
		case 0, '\r', '\n':
			return "", 0, errors.New("control character in quoted string")
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated quoted string")
}

// literalHeader parses "{n}" or "{n+}", which must end the line.
func literalHeader(s []byte) (*literalSpec, error) {
	if len(s) < 3 || s[len(s)-1] != '}' {
		return nil, errors.New("bad literal")
	}
	digits := s[1 : len(s)-1]
	lit := &literalSpec{}
	if n := len(digits); n > 0 && digits[n-1] == '+' {
		lit.plus = true
		digits = digits[:n-1]
	}
	if len(digits) == 0 || len(digits) > 10 {
		return nil, errors.New("bad literal size")
	}
	for _, d := range digits {
		if d < '0' || d > '9' {
			return nil, errors.New("bad literal size")
		}
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return nil, errors.New("bad literal size")
	}
	lit.size = n
	return lit, nil
}

// isAtomChar reports whether b may appear in an atom (or astring): not a
// control, space, parenthesis, brace or quoted special. ']' is allowed
// (ASTRING-CHAR); the list wildcards '%' and '*' and 8-bit bytes are
// accepted leniently (clients send "user*master" and UTF-8 names unquoted).
func isAtomChar(b byte) bool {
	switch b {
	case '(', ')', '{', ' ', '"', '\\', 0x7f:
		return false
	}
	return b > 0x1f
}

// astring returns the argument as an astring (atom or string) value.
func (t token) astring() (string, bool) {
	if t.kind == tokAtom || t.kind == tokString {
		return t.val, true
	}
	return "", false
}
