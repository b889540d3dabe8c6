package cli

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/legate-proxy/legate/internal/admin"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/daemon"
	"github.com/legate-proxy/legate/internal/directory"
)

// runCheck validates the file and builds what start-up builds except the
// store and the listeners. Errors (exit 1) are what would stop serve.
// Warnings (stderr, exit 0) are settings that work but probably not as
// meant, and files that do not exist yet (secrets, certificates, CAs, the
// admin socket's directory): a configuration may be checked before they are
// deployed (config.example.yaml from a fresh clone is one), and serve
// refuses to start until they exist. A file that exists but is unreadable
// (a secret: also empty or world-readable) is an error.
func runCheck(ctx context.Context, env Env, args []string) error {
	fset, cfgPath := flags(env, "check")
	if _, err := parse(fset, args, false); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	var errs []error
	warnings := cfg.Warnings()
	checked := cfg
	var fileErrs config.Errors
	for _, err := range []error{cfg.CheckSecrets(), cfg.CheckFiles()} {
		var es config.Errors
		if errors.As(err, &es) {
			fileErrs = append(fileErrs, es...)
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	if len(fileErrs) > 0 {
		for _, e := range fileErrs {
			if errors.Is(e, fs.ErrNotExist) {
				warnings = append(warnings, e)
			} else {
				errs = append(errs, e)
			}
		}
		checked = cfg.WithoutFiles(fileErrs) // read once, reported once
	}
	if cfg.Listen.Admin != "" {
		if err := admin.CheckPath(cfg.Listen.Admin); errors.Is(err, fs.ErrNotExist) {
			warnings = append(warnings, &config.Error{File: cfg.File(), Line: cfg.Line("listen.admin"), Key: "listen.admin",
				Msg: err.Error() + " (legate serve will not start until it exists)"})
		} else if err != nil {
			errs = append(errs, &config.Error{File: cfg.File(), Line: cfg.Line("listen.admin"), Key: "listen.admin", Msg: err.Error()})
		}
	}
	if err := daemon.Check(ctx, checked); err != nil {
		errs = append(errs, err)
	}
	slices.SortStableFunc(warnings, func(a, b *config.Error) int { return cmp.Compare(a.Line, b.Line) })
	for _, w := range warnings {
		msg := w.Error()
		if errors.Is(w, fs.ErrNotExist) {
			msg += " (legate serve will not start until it exists)"
		}
		fmt.Fprintf(env.Stderr, "legate: warning: %s\n", msg)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(warnings) > 0 {
		fmt.Fprintf(env.Stdout, "%s: OK, with %d warning(s)\n", *cfgPath, len(warnings))
		return nil
	}
	fmt.Fprintf(env.Stdout, "%s: OK\n", *cfgPath)
	return nil
}

// runHashPassword reads a password from standard input (the first line; the
// line break is not part of it) and prints its argon2id hash, with the
// parameters directory.HashArgon2id uses (m=64 MiB, t=3, p=2), for
// directory.static.users[].password_hash. From a terminal the typing is not
// echoed. The password never appears in arguments or output.
func runHashPassword(_ context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "hash-password")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	restore := noEcho(env.Stdin)
	if restore != nil {
		fmt.Fprint(env.Stderr, "Password: ")
	}
	pw, err := readSecretLine(env.Stdin)
	if restore != nil {
		restore()
		fmt.Fprintln(env.Stderr)
	}
	if err != nil {
		return fmt.Errorf("hash-password: reading the password from standard input: %w", err)
	}
	if pw == "" {
		return usagef("hash-password: the password on standard input is empty")
	}
	fmt.Fprintln(env.Stdout, directory.HashArgon2id(pw))
	return nil
}

// maxPasswordLine bounds what hash-password reads.
const maxPasswordLine = 4096

// readSecretLine reads one line (without CR LF) of at most maxPasswordLine
// bytes.
func readSecretLine(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLine+1), 512)
	line, err := br.ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	if len(line) > maxPasswordLine {
		return "", fmt.Errorf("longer than %d bytes", maxPasswordLine)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func runVersion(_ context.Context, env Env, args []string) error {
	fs, _ := flags(env, "version")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, Version())
	return nil
}

// Version describes this build: module version and VCS revision from the
// build info.
func Version() string {
	v, rev, dirty := "(devel)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
	}
	if rev != "" {
		return fmt.Sprintf("legate %s (commit %s%s)", v, rev, dirty)
	}
	return "legate " + v
}

func runServe(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "serve")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	return daemon.Serve(ctx, daemon.ServeOptions{ConfigPath: *cfgPath, Stderr: env.Stderr})
}
