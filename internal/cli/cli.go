// Package cli implements the `legate` command line (docs/contract.md §6). main only calls
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
		{"check", "validate the configuration file; warn about settings that cannot work as meant", runCheck},
		{"apppass", "create, list or revoke app passwords", runAppPass},
		{"explain", "show the login decision step by step, without side effects", runExplain},
		{"audit", "show recent decisions; --verify checks the hash chain", runAudit},
		{"sessions", "list or kill live sessions", runSessions},
		{"report", "legacy-client inventory per user and app password", runReport},
		{"store", "store copy --from A --to B: copy app passwords and audit between stores", runStore},
		{"hash-password", "read a password on stdin, print its argon2id hash for directory.static", runHashPassword},
		{"version", "print the version", runVersion},
		{"checkpassword", "Dovecot checkpassword passdb: ask the daemon over listen.decision", runCheckpassword},
	}
}

// synopses is the usage line of every command and subcommand, after
// "legate ". -h/--help prints it with the options; a test walks them all.
var synopses = map[string]string{
	"serve":          "serve [--config FILE]",
	"demo":           "demo [--imap ADDR] [--smtp ADDR] [--ldap ADDR] [--portal ADDR]",
	"check":          "check [--config FILE]",
	"apppass":        "apppass SUBCOMMAND [options]",
	"apppass create": "apppass create --user U --name N [--scope imap,smtp] [--networks CIDR,...] [--expires 90d] [--json] [--config FILE]",
	"apppass list":   "apppass list --user U [--json] [--config FILE]",
	"apppass revoke": "apppass revoke --user U (--id ID | --name N | --all) [--json] [--config FILE]",
	"explain":        "explain --user U --ip IP --protocol P [--tls] [--password-stdin] [--json] [--config FILE]",
	"audit":          "audit [--user U] [--since 24h] [--limit N] [--verify] [--json] [--config FILE]",
	"sessions":       "sessions [--user U] [--json] [--config FILE]\n       legate sessions kill (ID | --user U) [--json] [--config FILE]",
	"report":         "report [--since 30d] [--json] [--config FILE]",
	"store":          "store SUBCOMMAND [options]",
	"store copy":     "store copy --from CONFIG --to CONFIG",
	"hash-password":  "hash-password < password",
	"checkpassword":  "checkpassword [--socket PATH] PROGRAM... (Dovecot's checkpassword passdb; reads fd 3)",
	"version":        "version",
}

// groupUsage prints the usage of a command group (apppass, store) and its
// subcommands.
func groupUsage(w io.Writer, group string, subs ...string) {
	fmt.Fprintf(w, "usage: legate %s\n\n", synopses[group])
	for _, s := range subs {
		fmt.Fprintf(w, "  legate %s\n", synopses[group+" "+s])
	}
	fmt.Fprintf(w, "\n`legate %s SUBCOMMAND -h` lists its options.\n", group)
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 || isHelp(args[0]) {
		if len(args) == 2 { // legate help COMMAND
			return Run(ctx, []string{args[1], "-h"}, env)
		}
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
	fmt.Fprintf(env.Stderr, "legate: %s\n", safeLines(err.Error()))
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
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --config FILE (default ./legate.yaml). `legate COMMAND -h` lists its options.")
}

// flags returns a FlagSet for a command with the common --config flag.
func flags(env Env, name string) (*flag.FlagSet, *string) {
	fs := newFlagSet(env, name)
	cfg := fs.String("config", "legate.yaml", "configuration `file`")
	return fs, cfg
}

// newFlagSet returns a FlagSet whose -h/--help prints the command's synopsis
// and options.
func newFlagSet(env Env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("legate "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: legate %s\n", orDefault(synopses[name], name))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\noptions:")
			fs.PrintDefaults()
		}
	}
	return fs
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
