// Package cli implements the `legate` command line (SPEC §6). main only calls
// Run; every command lives here so tests can reach it. Exit codes: 0 ok,
// 1 failure, 2 usage.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/legate-proxy/legate/internal/control"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Env is the process environment a command runs in.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads environment variables; nil means os.Getenv.
	Getenv func(string) string
}

// usageError marks errors that exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the proxy (every listener under listen:)", runServe},
		{"demo", "run a self-contained demo with in-memory upstreams", runDemo},
		{"check", "validate the configuration file", runCheck},
		{"apppass", "create, list or revoke app passwords", runAppPass},
		{"explain", "show the login decision step by step, without side effects", runExplain},
		{"audit", "show recent decisions; --verify checks the hash chain", runAudit},
		{"sessions", "list or kill live sessions", runSessions},
		{"report", "legacy-client inventory per user and app password", runReport},
		{"store", "store copy --from A --to B: copy app passwords and audit between stores", runStore},
		{"version", "print the version", runVersion},
		{"checkpassword", "Dovecot checkpassword passdb: ask the daemon over listen.decision", runCheckpassword},
	}
}

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.Stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return exitCode(env, c.run(ctx, env, args[1:]))
		}
	}
	fmt.Fprintf(env.Stderr, "legate: unknown command %q\n\n", args[0])
	printUsage(env.Stderr)
	return ExitUsage
}

func exitCode(env Env, err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var es exitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	fmt.Fprintf(env.Stderr, "legate: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, control.ErrUsage) {
		return ExitUsage
	}
	return ExitFailure
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: legate COMMAND [--config FILE] [options]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --config FILE (default ./legate.yaml). `legate COMMAND -h` lists its options.")
}

// flags returns a FlagSet for a command with the common --config flag.
func flags(env Env, name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("legate "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfg := fs.String("config", "legate.yaml", "configuration `file`")
	return fs, cfg
}

// parse parses flags, allowing them after positional arguments too
// (legate sessions kill ID --config x), and returns the positional arguments.
// Flag errors become usage errors; positional arguments are an error unless
// positional is true.
func parse(fs *flag.FlagSet, args []string, positional bool) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) > 0 && !positional {
		return nil, usagef("unexpected argument %q", strings.Join(pos, " "))
	}
	return pos, nil
}
