package imap_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
)

// TestE2EMbsync syncs alice's INBOX through Legate with isync's mbsync.
func TestE2EMbsync(t *testing.T) {
	testenv.Require(t, "mbsync")
	e := newE2E(t)
	_, tlsAddr := e.legate(upstream.ModeSTARTTLS, upstream.LoginAuthzid, policy.Default())
	e.dc.Deliver("alice", "From: bob@example.com\r\nSubject: for mbsync\r\n\r\nsync me\r\n")
	_, port, _ := net.SplitHostPort(tlsAddr) // the certificate names localhost
	dir := t.TempDir()
	conf := fmt.Sprintf(`IMAPAccount legate
Host %s
Port %s
User alice
PassCmd "printenv LEGATE_PASS"
SSLType IMAPS
CertificateFile %s
AuthMechs PLAIN

IMAPStore remote
Account legate

MaildirStore local
Path %s/
Inbox %s/INBOX

Channel inbox
Far :remote:INBOX
Near :local:INBOX
Create Near
Sync Pull
SyncState *
`, "localhost", port, e.certs.CAFile, dir, dir)
	confPath := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mbsync", "-c", confPath, "inbox")
	cmd.Env = append(os.Environ(), "LEGATE_PASS="+e.secrets["alice"])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync: %v\n%s", err, out)
	}
	var found bool
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, "INBOX", sub))
		for _, ent := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, "INBOX", sub, ent.Name()))
			found = found || bytes.Contains(b, []byte("Subject: for mbsync"))
		}
	}
	if !found {
		t.Errorf("mbsync output %q: message not in the local maildir", out)
	}
}
