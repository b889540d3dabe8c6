package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/daemon"
	"github.com/legate-proxy/legate/store"
)

// runStore is `legate store copy --from CONFIG_A --to CONFIG_B`: it copies
// every app password and the audit chain from the store of one configuration
// to the store of another (bolt → etcd or back). It is idempotent and checks
// the result (see store.Copy). A bbolt store must not be open by a running
// server.
func runStore(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 && isHelp(args[0]) {
		groupUsage(env.Stderr, "store", "copy")
		return nil
	}
	if len(args) == 0 || args[0] != "copy" {
		return usagef("usage: legate store copy --from CONFIG --to CONFIG")
	}
	fs := newFlagSet(env, "store copy")
	from := fs.String("from", "", "configuration `file` of the source store")
	to := fs.String("to", "", "configuration `file` of the target store")
	if _, err := parse(fs, args[1:], false); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return usagef("store copy: --from and --to are both required")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(path string) (store.Store, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		s, err := daemon.OpenStore(ctx, cfg, log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	}
	src, err := open(*from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := open(*to)
	if err != nil {
		return err
	}
	defer dst.Close()
	st, err := store.Copy(ctx, src, dst)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "copied %d app passwords (%d new) and %d audit records (%d new); the target holds all of them and its audit chain verifies\n",
		st.Passwords, st.PasswordsWritten, st.Audit, st.AuditWritten)
	return dst.Close()
}
