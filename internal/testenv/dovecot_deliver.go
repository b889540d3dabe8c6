package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Deliver puts a message into user's INBOX the way an MDA would: written
// into Maildir/tmp, then renamed into Maildir/new, owned by the mail
// user. Dovecot notices it through inotify (or within a second through
// mailbox_idle_check_interval), so an IDLE session gets an EXISTS
// response. It does not log in, so LoginCount is unaffected. message
// should use CRLF or LF line endings consistently.
func (d *Dovecot) Deliver(user, message string) {
	d.t.Helper()
	if _, ok := d.Users[user]; !ok {
		d.t.Fatalf("testenv: dovecot: deliver: unknown user %q", user)
	}
	md := filepath.Join(d.Dir, "home", user, "Maildir")
	for _, dir := range []string{filepath.Dir(md), md, filepath.Join(md, "tmp"), filepath.Join(md, "new"), filepath.Join(md, "cur")} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			if os.IsExist(err) {
				continue
			}
			d.t.Fatalf("testenv: dovecot: deliver: %v", err)
		}
		if err := d.chownMail(dir); err != nil {
			d.t.Fatalf("testenv: dovecot: deliver: %v", err)
		}
	}
	name := fmt.Sprintf("%d.M%dP%d_%d.testenv", time.Now().Unix(), time.Now().Nanosecond()/1000, os.Getpid(), d.seq.Add(1))
	tmp := filepath.Join(md, "tmp", name)
	if err := os.WriteFile(tmp, []byte(message), 0o600); err != nil {
		d.t.Fatalf("testenv: dovecot: deliver: %v", err)
	}
	if err := d.chownMail(tmp); err != nil {
		d.t.Fatalf("testenv: dovecot: deliver: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		d.t.Fatalf("testenv: dovecot: deliver: %v", err)
	}
}

func (d *Dovecot) chownMail(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, d.mailUID, d.mailGID)
}
