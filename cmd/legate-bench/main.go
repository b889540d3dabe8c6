// Command legate-bench measures Legate against the real upstream servers it
// fronts, on this machine, in one run: Dovecot (IMAP, submission relaying to
// Postfix's smtp-sink) and OpenLDAP slapd, started through internal/testenv,
// and Legate itself as a child process (this binary re-executed in serve
// mode), so that its RSS and file descriptors can be read cleanly from
// /proc/<pid>. For IMAP a bare TCP relay (io.Copy both ways, in this
// process) is the reference a proxy cannot beat.
//
// It prints one markdown table per protocol with absolute numbers, the
// ratio to the reference and PASS/MISS against the targets of issues 4
// (IMAP), 5 (SMTP) and 6 (LDAP):
//
//	legate-bench [-duration 5s] [-sessions 16] [-idle 1000] [-only imap|smtp|ldap|oauth2] [-out FILE] [-cpuprofile FILE]
//
// Exit status: 0 when every measurement ran (MISS rows included), 1 when
// one could not run, 2 on a usage error.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

func main() {
	if code, ok := childMain(); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("legate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{BigMessage: 50_000_000}
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each throughput measurement")
	fs.IntVar(&o.Sessions, "sessions", 16, "concurrent sessions (connections) for throughput measurements")
	fs.IntVar(&o.Idle, "idle", 1000, "idle IMAP sessions opened for the memory measurement (at most 1000: Dovecot's imap process_limit)")
	only := fs.String("only", "", "run one section only: imap, smtp, ldap or oauth2")
	out := fs.String("out", "", "also write the markdown report to this file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the Legate child process to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.Duration <= 0 || o.Sessions < 1 || o.Idle < 1 {
		fmt.Fprintln(stderr, "legate-bench: bad arguments (see -h)")
		return 2
	}
	protos := []string{"imap", "smtp", "ldap", "oauth2"}
	if *only != "" {
		if runner(*only) == nil {
			fmt.Fprintf(stderr, "legate-bench: -only %q: want imap, smtp, ldap or oauth2\n", *only)
			return 2
		}
		protos = []string{*only}
	}
	if *cpuprofile != "" {
		os.Setenv(cpuProfileEnv, *cpuprofile) // inherited by the Legate child
	}
	if err := raiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "legate-bench: %v (continuing)\n", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var b strings.Builder
	b.WriteString(machineHeader(o, strings.Join(protos, ",")))
	fmt.Fprint(stdout, b.String())
	code := 0
	for _, p := range protos {
		fmt.Fprintf(stderr, "legate-bench: %s ...\n", p)
		tb := newBenchTB(stderr)
		var sec *section
		err := tb.guard(func() { sec = runner(p)(ctx, tb, o) })
		tb.close()
		if err == nil && tb.Failed() {
			err = fmt.Errorf("%s: the harness reported errors (see above)", p)
		}
		if err != nil {
			fmt.Fprintf(stderr, "legate-bench: %s: %v\n", p, err)
			fmt.Fprintf(&b, "\n## %s\n\nnot measured: %v\n", strings.ToUpper(p), err)
			code = 1
			continue
		}
		md := sec.markdown()
		b.WriteString(md)
		fmt.Fprint(stdout, md)
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(stderr, "legate-bench: %v\n", err)
			return 1
		}
	}
	return code
}

// options are the command-line settings every section reads.
type options struct {
	// Duration is the length of each throughput measurement.
	Duration time.Duration
	// Sessions is the number of concurrent sessions per measurement.
	Sessions int
	// Idle is the number of idle IMAP sessions for the memory measurement.
	Idle int
	// BigMessage is the size in bytes of the one large SMTP message
	// (50 MB from the command line; smaller in the smoke test).
	BigMessage int
}

// runner returns the measurements of one protocol, or nil.
func runner(proto string) func(context.Context, testing.TB, options) *section {
	switch proto {
	case "imap":
		return benchIMAP
	case "smtp":
		return benchSMTP
	case "ldap":
		return benchLDAP
	case "oauth2":
		return benchOAuth2
	}
	return nil
}
