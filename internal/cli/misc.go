package cli

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/daemon"
)

func runCheck(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "check")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if err := daemon.Check(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: OK\n", *cfgPath)
	return nil
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
