package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/store"
)

func runExplain(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "explain")
	user := fs.String("user", "", "the login name")
	ip := fs.String("ip", "", "the client IP address")
	proto := fs.String("protocol", "", "imap, smtp or ldap")
	tls := fs.Bool("tls", false, "the connection is TLS")
	pwStdin := fs.Bool("password-stdin", false, "read the password to check from standard input (first line)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	if *user == "" || *ip == "" || *proto == "" {
		return usagef("explain needs --user, --ip and --protocol")
	}
	addr, err := netip.ParseAddr(*ip)
	if err != nil {
		return usagef("--ip: %q is not an IP address", *ip)
	}
	a := control.ExplainArgs{User: *user, IP: addr, Protocol: strings.ToLower(*proto), TLS: *tls}
	if *pwStdin {
		line, err := bufio.NewReader(env.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("explain: reading the password from standard input: %w", err)
		}
		a.Secret = strings.TrimRight(line, "\r\n")
	}
	api, closeAPI, err := openAPI(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer closeAPI()
	e, err := api.Explain(ctx, a)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, e)
	}
	fmt.Fprintf(env.Stdout, "login of %s from %s over %s (tls=%v)\n", safe(*user), addr, safe(a.Protocol), a.TLS)
	if !e.SecretChecked {
		fmt.Fprintln(env.Stdout, "(no --password-stdin: the secret was not checked; the decision shows what happens with a wrong one)")
	}
	for i, s := range e.Trace {
		fmt.Fprintf(env.Stdout, "%2d. %s\n", i+1, safe(s))
	}
	fmt.Fprintf(env.Stdout, "decision: %s (rule %s)", safe(e.Outcome), safe(e.Rule))
	if e.Reason != "" {
		fmt.Fprintf(env.Stdout, ": %s", safe(e.Reason))
	}
	fmt.Fprintln(env.Stdout)
	if e.Upstream != "" {
		fmt.Fprintf(env.Stdout, "upstream login: %s\n", safe(e.Upstream))
	}
	return nil
}

func runAudit(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "audit")
	user := fs.String("user", "", "only this user")
	since := fs.String("since", "", "only records newer than this, e.g. 24h or 7d")
	limit := fs.Int("limit", 0, "only the most recent N records")
	verify := fs.Bool("verify", false, "check the audit hash chain")
	asJSON := fs.Bool("json", false, "print JSON")
	var head headFlag
	fs.Var(&head, "head", "print the newest record's SEQ HASH; with --verify SEQ:HASH, fail when that record is missing or differs")
	if _, err := parse(fs, headArgs(args), false); err != nil {
		return err
	}
	if head.value != "" && !*verify {
		return usagef("--head SEQ:HASH needs --verify (--head alone prints the head)")
	}
	want, err := head.parse()
	if err != nil {
		return err
	}
	api, closeAPI, err := openAPI(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer closeAPI()
	if head.print && !*verify {
		return printHead(ctx, env, api)
	}
	if *verify {
		r, err := api.VerifyAudit(ctx)
		if err != nil {
			return err
		}
		if r.OK && head.value != "" {
			if err := checkHead(ctx, api, r, want); err != nil {
				return err
			}
		}
		if *asJSON {
			if err := writeJSON(env.Stdout, r); err != nil {
				return err
			}
		} else if r.OK {
			fmt.Fprintf(env.Stdout, "audit chain OK: %d records verified\n", r.Records)
		}
		if !r.OK {
			return fmt.Errorf("audit chain BROKEN at record %d: %s", r.BrokenAt, safe(r.Problem))
		}
		return nil
	}
	a := control.AuditArgs{User: *user, Limit: *limit}
	if *since != "" {
		d, err := config.ParseDuration(*since)
		if err != nil {
			return usagef("--since: %q is not a duration (e.g. 24h, 7d)", *since)
		}
		a.Since = d
	}
	recs, err := api.Audit(ctx, a)
	if err != nil {
		return err
	}
	if *asJSON {
		if recs == nil {
			return writeJSON(env.Stdout, []any{})
		}
		return writeJSON(env.Stdout, recs)
	}
	return printAudit(env.Stdout, recs)
}

// printAudit is audit's text output.
func printAudit(w io.Writer, recs []store.AuditRecord) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTION\tVIA\tUSER\tIP\tOUTCOME\tRULE\tAPP PASSWORD\tDETAIL")
	for _, r := range recs {
		detail := r.Detail
		if r.Count > 1 { // aggregated throttled attempts
			detail = strings.TrimSpace(fmt.Sprintf("%d attempts %s", r.Count, detail))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format(time.DateTime), safe(r.Action), safe(r.Via),
			safe(r.User), safe(r.IP), safe(r.Outcome), safe(r.Rule), safe(r.AppPasswordID), safe(detail))
	}
	return tw.Flush()
}

func runSessions(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "sessions")
	user := fs.String("user", "", "only (or kill) this user's sessions")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, true)
	if err != nil {
		return err
	}
	api, closeAPI, err := openAPI(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer closeAPI()
	if len(pos) > 0 {
		if pos[0] != "kill" || len(pos) > 2 {
			return usagef("usage: legate sessions [--user U] | legate sessions kill (ID | --user U)")
		}
		a := control.KillArgs{User: *user, Via: "cli"}
		if len(pos) == 2 {
			a.ID = pos[1]
		}
		n, err := api.KillSessions(ctx, a)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(env.Stdout, map[string]int{"closed": n})
		}
		fmt.Fprintf(env.Stdout, "%d session(s) closed\n", n)
		return nil
	}
	list, err := api.Sessions(ctx, *user)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			return writeJSON(env.Stdout, []any{})
		}
		return writeJSON(env.Stdout, list)
	}
	return printSessions(env.Stdout, list)
}

// printSessions is sessions' text output.
func printSessions(w io.Writer, list []session.Info) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tPROTOCOL\tIP\tAPP PASSWORD\tCLIENT\tSTARTED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(s.ID), safe(s.User), safe(s.Protocol), s.IP, safe(s.AppPasswordID), safe(s.Client),
			s.Started.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func runReport(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "report")
	since := fs.String("since", "", "only logins newer than this, e.g. 30d")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	var a control.ReportArgs
	if *since != "" {
		d, err := config.ParseDuration(*since)
		if err != nil {
			return usagef("--since: %q is not a duration (e.g. 30d)", *since)
		}
		a.Since = d
	}
	api, closeAPI, err := openAPI(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer closeAPI()
	r, err := api.Report(ctx, a)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, r)
	}
	return printReport(env.Stdout, r)
}

// printReport is report's text output.
func printReport(w io.Writer, r control.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tAPP PASSWORD\tNAME\tPROTOCOLS\tCLIENTS\tIPS\tLAST IP\tFIRST SEEN\tLAST SEEN\tLOGINS\tUPSTREAM REFUSED")
	for _, r := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\n", safe(r.User), orDefault(safe(r.AppPasswordID), "(primary)"), safe(r.Name),
			safeList(r.Protocols, ","), safeList(r.Clients, "; "), r.IPs, safe(r.LastIP),
			r.FirstSeen.Local().Format(time.DateTime), r.LastSeen.Local().Format(time.DateTime), r.Logins, r.UpstreamFailures)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.NeverUsed) > 0 {
		fmt.Fprintln(w, "\nApp passwords never used:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, u := range r.NeverUsed {
			fmt.Fprintf(tw, "  %s\t%s\t%s\tcreated %s\n", safe(u.User), safe(u.AppPasswordID), safe(u.Name), u.Created.Local().Format(time.DateOnly))
		}
		return tw.Flush()
	}
	return nil
}
