package decision_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/decision"
	"github.com/legate-proxy/legate/internal/systemtest"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

// buildLegate builds cmd/legate into dir (mode 0755, for Dovecot's users).
func buildLegate(t *testing.T, dir string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "legate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/legate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/legate: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestDovecotCheckpassword: Dovecot with a checkpassword passdb running the
// built `legate checkpassword` accepts alice's app password on IMAP LOGIN,
// refuses it once revoked, and the decision socket refuses a caller outside
// its group (docs/contract.md §9, issue #16.4).
func TestDovecotCheckpassword(t *testing.T) {
	testenv.Require(t, "dovecot", "go")
	if os.Geteuid() != 0 {
		if testenv.InCI() {
			t.Fatal("needs root: the decision socket's group and Dovecot's users")
		}
		t.Skip("needs root")
	}
	dir := testenv.TempDir(t)
	bin := buildLegate(t, dir)
	ctx := context.Background()

	// The daemon as operators run it: listen.decision with its group.
	sock := filepath.Join(dir, "decision.sock")
	lg := systemtest.StartLegate(t, systemtest.LegateOptions{Mutate: func(c *config.Config) {
		c.Listen.Decision = sock
		c.Decision.SocketGroup = "dovecot"
	}})
	st := lg.Auth().Store()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := user.LookupGroup("dovecot")
	if fi.Mode().Perm() != 0o660 || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)) != g.Gid {
		t.Errorf("socket mode %v gid %d, want 0660 and dovecot's %s", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, g.Gid)
	}

	dv := testenv.StartDovecot(t, testenv.DovecotOptions{Checkpassword: bin + " checkpassword --socket " + sock})
	ap, secret, err := st.Create(ctx, store.CreateRequest{User: "alice", Name: "Phone"})
	if err != nil {
		t.Fatal(err)
	}
	if got := testenv.IMAPLogin(t, dv.IMAPAddr, "", "alice", secret); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("LOGIN alice with her app password, straight to Dovecot: %q, want OK\n%s", got, dv.Log())
	}
	if got := testenv.IMAPLogin(t, dv.IMAPAddr, "", "alice", "not-the-password"); !strings.HasPrefix(got, "a NO") {
		t.Errorf("LOGIN with a wrong password: %q, want NO", got)
	}
	if got := testenv.IMAPLogin(t, dv.IMAPAddr, "", "bob", secret); !strings.HasPrefix(got, "a NO") {
		t.Errorf("LOGIN bob with alice's app password: %q, want NO", got)
	}
	if _, err := st.Revoke(ctx, "alice", store.Selector{ID: ap.ID}); err != nil {
		t.Fatal(err)
	}
	if got := testenv.IMAPLogin(t, dv.IMAPAddr, "", "alice", secret); !strings.HasPrefix(got, "a NO") {
		t.Errorf("LOGIN after revoke: %q, want NO", got)
	}
	// The audit has Legate's own records of these logins. The daemon
	// queues a record as it answers; wait (bounded) until all are written.
	var allow, deny int
	var recs []store.AuditRecord
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := st.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var err error
		if recs, err = st.AuditLog(ctx, store.AuditQuery{User: "alice"}); err != nil {
			t.Fatal(err)
		}
		allow, deny = 0, 0
		for _, r := range recs {
			if r.Action != "login" || r.Client != "dovecot/imap" || r.Protocol != policy.IMAP || r.IP != "127.0.0.1" {
				continue
			}
			if r.Outcome == "allow" && r.AppPasswordID == ap.ID {
				allow++
			} else if r.Outcome == "deny" {
				deny++
			}
		}
		if (allow == 1 && deny == 2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if allow != 1 || deny != 2 {
		t.Errorf("audit: %d allowed and %d denied dovecot/imap logins of alice from 127.0.0.1, want 1 and 2: %+v", allow, deny, recs)
	}

	// The socket itself: a caller in group dovecot is answered, one outside
	// it (nobody) cannot connect, and checkpassword says "cannot be asked".
	_, secret2, err := st.Create(ctx, store.CreateRequest{User: "alice", Name: "Laptop"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(as string) int {
		u, err := user.Lookup(as)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "checkpassword", "--socket", sock, "/bin/true")
		cmd.ExtraFiles = []*os.File{r} // fd 3
		cmd.Env = []string{"SERVICE=imap", "TCPREMOTEIP=192.0.2.7", "AUTH_SECURED=secured"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		w.Write([]byte("alice\x00" + secret2 + "\x00\x00"))
		w.Close()
		err = cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		t.Logf("checkpassword as %s: exit %d %s", as, code, strings.TrimSpace(stderr.String()))
		return code
	}
	if code := run("dovecot"); code != decision.ExitAllow {
		t.Errorf("checkpassword as dovecot (the socket's group): exit %d, want 0", code)
	}
	if code := run("nobody"); code != decision.ExitUnavailable {
		t.Errorf("checkpassword as nobody (not in the group): exit %d, want 111 (refused by the socket's mode)", code)
	}
}
