package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/legate-proxy/legate/internal/admin"
	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/daemon"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/store"
)

// API is what the CLI needs; control.Service (in-process, on the database) and
// admin.Client (a running server, over the admin socket) both provide it.
type API interface {
	CreateAppPassword(ctx context.Context, a control.CreateArgs) (control.Created, error)
	ListAppPasswords(ctx context.Context, user string) ([]control.Listed, error)
	RevokeAppPasswords(ctx context.Context, a control.RevokeArgs) (control.Revoked, error)
	Explain(ctx context.Context, a control.ExplainArgs) (control.Explanation, error)
	Audit(ctx context.Context, a control.AuditArgs) ([]store.AuditRecord, error)
	VerifyAudit(ctx context.Context) (store.VerifyResult, error)
	Sessions(ctx context.Context, user string) ([]session.Info, error)
	KillSessions(ctx context.Context, a control.KillArgs) (int, error)
	Report(ctx context.Context, a control.ReportArgs) (control.Report, error)
}

var (
	_ API = (*control.Service)(nil)
	_ API = (*admin.Client)(nil)
)

// openAPI talks to a running server through its admin socket if one answers,
// else opens the database itself. close must be called.
func openAPI(ctx context.Context, cfgPath string) (api API, close func(), err error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Listen.Admin != "" {
		c, err := admin.Dial(cfg.Listen.Admin)
		if err == nil {
			return c, func() {}, nil
		}
		if !errors.Is(err, admin.ErrNotRunning) {
			return nil, nil, err // not a socket, or someone else's: neither talk nor fall back
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := daemon.OpenStore(ctx, cfg, log)
	if err != nil {
		if errors.Is(err, store.ErrLocked) && cfg.Listen.Admin == "" {
			return nil, nil, fmt.Errorf("%w (set listen.admin so the CLI can reach the running server)", err)
		}
		return nil, nil, err
	}
	dir, err := daemon.BuildDirectory(cfg)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	svc := auth.New(auth.Options{Store: st, Directory: dir, Policy: daemon.PolicyOf(cfg), Logger: log})
	limit := cfg.Policy.MaxAppPasswordsPerUser
	local := &control.Service{Store: st, Directory: svc.Directory, Policy: svc.Policy, Explainer: svc, MaxPerUser: func() int { return limit },
		UpstreamLogin: cfg.UpstreamLogin}
	return local, func() { st.Close() }, nil
}
