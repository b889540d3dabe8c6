package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/legate-proxy/legate/internal/demo"
)

func runDemo(ctx context.Context, env Env, args []string) error {
	fs, _ := flags(env, "demo")
	imapAddr := fs.String("imap", "127.0.0.1:1143", "IMAP listen address (- disables)")
	smtpAddr := fs.String("smtp", "127.0.0.1:1587", "SMTP submission listen address (- disables)")
	ldapAddr := fs.String("ldap", "127.0.0.1:1389", "LDAP listen address (- disables)")
	portalAddr := fs.String("portal", "127.0.0.1:1080", "self-service page address (- disables); demo sign-in only")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo.Run(ctx, demo.Options{IMAP: *imapAddr, SMTP: *smtpAddr, LDAP: *ldapAddr, Portal: *portalAddr, Stdout: env.Stdout})
}
