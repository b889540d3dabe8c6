package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a configuration file, located at File:Line and
// naming the key path (e.g. "policy.trusted_networks[1]").
type Error struct {
	File string // file name as given to Load or Parse; may be empty
	Line int    // 1-based; zero when the key has no position (built in code)
	Key  string // dotted key path; empty for whole-file problems
	Msg  string

	// bare: Msg already names the key, so Error does not repeat it.
	bare bool
	// cause, when set, is the underlying error (e.g. fs.ErrNotExist of a
	// secret file), for errors.Is.
	cause error
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.cause }

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" && !e.bare {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, sorted by line. Load, Parse and
// Validate return it (as error) when anything is wrong; test with errors.As.
type Errors []*Error

// maxShown bounds how many problems Errors.Error prints.
const maxShown = 100

// Error returns one problem per line (at most 100, then a count of the rest).
func (es Errors) Error() string {
	lines := make([]string, 0, min(len(es), maxShown+1))
	for i, e := range es {
		if i == maxShown {
			lines = append(lines, fmt.Sprintf("... and %d more problems", len(es)-maxShown))
			break
		}
		lines = append(lines, e.Error())
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each *Error to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sorted returns es ordered by line (positionless errors last), keeping the
// order of discovery among equal lines.
func (es Errors) sorted() Errors {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *Error) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return cmp.Compare(la, lb)
	})
	return out
}

// err returns es as an error, or nil when empty.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es.sorted()
}
