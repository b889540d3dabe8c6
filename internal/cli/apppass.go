package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
)

func runAppPass(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		groupUsage(env.Stderr, "apppass", "create", "list", "revoke")
		return usagef("apppass needs a subcommand: create, list or revoke")
	}
	if isHelp(args[0]) {
		groupUsage(env.Stderr, "apppass", "create", "list", "revoke")
		return nil
	}
	switch args[0] {
	case "create":
		return runAppPassCreate(ctx, env, args[1:])
	case "list":
		return runAppPassList(ctx, env, args[1:])
	case "revoke":
		return runAppPassRevoke(ctx, env, args[1:])
	}
	return usagef("unknown apppass subcommand %q (want create, list or revoke)", args[0])
}

func runAppPassCreate(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "apppass create")
	user := fs.String("user", "", "the user")
	name := fs.String("name", "", "the device the password is for, e.g. Laptop")
	scope := fs.String("scope", "", "comma-separated protocols (imap,smtp,ldap); default all")
	networks := fs.String("networks", "", "comma-separated CIDRs the password may be used from; default anywhere")
	expires := fs.String("expires", "", "lifetime, e.g. 90d or 720h; default never")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	if *user == "" || *name == "" {
		return usagef("apppass create needs --user and --name")
	}
	a := control.CreateArgs{User: *user, Name: *name, Scope: splitList(*scope), Via: "cli"}
	for _, n := range splitList(*networks) {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return usagef("--networks: %q is not a CIDR", n)
		}
		a.Networks = append(a.Networks, p.Masked())
	}
	if *expires != "" {
		d, err := config.ParseDuration(*expires)
		if err != nil || d <= 0 {
			return usagef("--expires: %q is not a positive duration (e.g. 90d, 12h)", *expires)
		}
		a.ExpiresIn = d
	}
	api, closeAPI, err := openAPI(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer closeAPI()
	c, err := api.CreateAppPassword(ctx, a)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, c)
	}
	ap := c.AppPassword
	w := env.Stdout
	fmt.Fprintf(w, "Created app password %q (id %s) for %s.\n", ap.Name, safe(ap.ID), safe(ap.User))
	fmt.Fprintf(w, "scope:    %s\n", orDefault(safeList(ap.Scope, ", "), "all protocols"))
	fmt.Fprintf(w, "networks: %s\n", orDefault(prefixes(ap.Networks), "anywhere"))
	fmt.Fprintf(w, "expires:  %s\n", timeOr(ap.Expires, "never"))
	fmt.Fprintln(w, "It is shown only now; Legate keeps only a keyed hash. The password:")
	fmt.Fprintln(w, c.Secret)
	return nil
}

func runAppPassList(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "apppass list")
	user := fs.String("user", "", "the user")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	if *user == "" {
		return usagef("apppass list needs --user")
	}
	api, closeAPI, err := openAPI(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer closeAPI()
	list, err := api.ListAppPasswords(ctx, *user)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []control.Listed{}
		}
		return writeJSON(env.Stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(env.Stdout, "%s has no app passwords.\n", safe(*user))
		return nil
	}
	return printAppPasswords(env.Stdout, list)
}

// printAppPasswords is apppass list's text output.
func printAppPasswords(w io.Writer, list []control.Listed) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCREATED\tEXPIRES\tSCOPE\tNETWORKS\tLAST USED\tSTATUS")
	for _, l := range list {
		last := "never"
		if !l.LastUse.Time.IsZero() {
			last = fmt.Sprintf("%s from %s (%s)", l.LastUse.Time.Local().Format("2006-01-02 15:04"), l.LastUse.IP, safe(l.LastUse.Protocol))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(l.ID), safe(l.Name), l.Created.Local().Format("2006-01-02 15:04"),
			timeOr(l.Expires, "never"), orDefault(safeList(l.Scope, ","), "all"),
			orDefault(prefixes(l.Networks), "any"), last, safe(l.Status))
	}
	return tw.Flush()
}

func runAppPassRevoke(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags(env, "apppass revoke")
	user := fs.String("user", "", "the user")
	id := fs.String("id", "", "revoke the app password with this id")
	name := fs.String("name", "", "revoke the app password with this name")
	all := fs.Bool("all", false, "revoke all of the user's app passwords")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	if *user == "" {
		return usagef("apppass revoke needs --user and one of --id, --name, --all")
	}
	api, closeAPI, err := openAPI(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer closeAPI()
	r, err := api.RevokeAppPasswords(ctx, control.RevokeArgs{User: *user, ID: *id, Name: *name, All: *all, Via: "cli"})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, r)
	}
	for _, ap := range r.Revoked {
		fmt.Fprintf(env.Stdout, "revoked %s (%s)\n", safe(ap.ID), safe(ap.Name))
	}
	fmt.Fprintf(env.Stdout, "%d app password(s) revoked, %d live session(s) closed\n", len(r.Revoked), r.SessionsClosed)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, strings.ToLower(f))
		}
	}
	return out
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func timeOr(t time.Time, d string) string {
	if t.IsZero() {
		return d
	}
	return t.Local().Format("2006-01-02 15:04")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
