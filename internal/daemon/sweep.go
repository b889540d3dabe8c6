package daemon

import (
	"context"
	"time"

	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/store"
)

// sessionHooks connect the registry to the login service (re-decisions),
// the audit log and the log: every session closed by a revoke, a kill or a
// sweep is logged and audited with its reason, and every session's
// upstream outcome is audited (issue 17.7).
func (d *Daemon) sessionHooks() session.Hooks {
	return session.Hooks{
		Recheck:  d.auth.Recheck,
		Upstream: d.auditUpstream,
		Closed:   d.auditClosed,
	}
}

// auditUpstream records whether the upstream accepted an allowed login:
// "allowed, but the upstream refused" is then told apart from a working
// session in `legate audit` and `legate report`.
func (d *Daemon) auditUpstream(s session.Info, ok bool) {
	outcome, detail := "ok", "upstream session open"
	if !ok {
		outcome, detail = "error", "upstream login failed or unreachable"
		d.log.Warn("upstream refused an allowed login", "user", s.User, "proto", s.Protocol,
			"session", s.ID, "app_password", s.AppPasswordID)
	}
	d.store.Audit(store.AuditRecord{Time: time.Now(), Action: "upstream", Via: s.Protocol, User: s.User,
		Protocol: s.Protocol, IP: s.IP.String(), Outcome: outcome, AppPasswordID: s.AppPasswordID,
		Client: s.Client, Detail: detail})
}

// auditClosed logs and audits a session the registry closed.
func (d *Daemon) auditClosed(s session.Info, why session.Why) {
	d.log.Info("session closed", "user", s.User, "proto", s.Protocol, "session", s.ID,
		"app_password", s.AppPasswordID, "cause", string(why.Cause), "rule", why.Rule, "reason", why.Reason)
	d.store.Audit(store.AuditRecord{Time: time.Now(), Action: "close", Via: s.Protocol, User: s.User,
		Protocol: s.Protocol, IP: s.IP.String(), Outcome: string(why.Cause), Rule: why.Rule,
		AppPasswordID: s.AppPasswordID, Client: s.Client, Detail: string(why.Cause) + ": " + why.Reason})
}

// auditDrained logs and audits the sessions a drain is about to close.
func (d *Daemon) auditDrained() {
	for _, s := range d.registry.List("") {
		d.auditClosed(s, session.Why{Cause: "drain", Reason: "server shutting down"})
	}
}

// sweeper re-decides every live session every limits.recheck_interval
// (read afresh after each round, so a reload changes it; 0 pauses the
// periodic sweep) and at once when kicked (after every reload). It ends
// when d.stopSweep is closed.
func (d *Daemon) sweeper() {
	defer d.sweepDone.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Reset(d.recheckInterval())
		select {
		case <-d.stopSweep:
			return
		case <-d.kickSweep:
		case <-t.C:
			if d.config().Limits.RecheckInterval <= 0 {
				continue
			}
		}
		d.sweep()
	}
}

func (d *Daemon) recheckInterval() time.Duration {
	if iv := d.config().Limits.RecheckInterval.Std(); iv > 0 {
		return iv
	}
	return time.Hour // disabled: wake up now and then to see a reload's value
}

// sweep runs one re-decision of every live session, bounded by the
// interval (or a minute).
func (d *Daemon) sweep() {
	iv := d.config().Limits.RecheckInterval.Std()
	if iv <= 0 {
		iv = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), iv)
	defer cancel()
	start := time.Now()
	if n := d.registry.Sweep(ctx); n > 0 {
		d.log.Info("session sweep closed sessions", "closed", n, "took", time.Since(start))
	}
}

// kickSweeper asks for a sweep now (after a reload); it never blocks.
func (d *Daemon) kickSweeper() {
	select {
	case d.kickSweep <- struct{}{}:
	default:
	}
}
