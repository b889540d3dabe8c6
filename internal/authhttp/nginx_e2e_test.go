package authhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/systemtest"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

const ngxMailModule = "/usr/lib/nginx/modules/ngx_mail_module.so"

// startNginx runs a private nginx mail proxy (imap on a loopback port)
// whose auth_http is Legate's; it stops when the test ends.
func startNginx(t *testing.T, authAddr, secret string) string {
	t.Helper()
	testenv.Require(t, "nginx", "curl")
	if _, err := os.Stat(ngxMailModule); err != nil {
		if testenv.InCI() {
			t.Fatalf("nginx mail module missing (libnginx-mod-mail): %v", err)
		}
		t.Skip("libnginx-mod-mail not installed")
	}
	dir := testenv.TempDir(t)
	addr := testenv.FreeAddr(t)
	conf := fmt.Sprintf(`load_module %s;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 64; }
mail {
  server_name mail.test;
  auth_http %s/auth;
  auth_http_header X-Auth-Key %q;
  proxy_pass_error_message on;
  server { listen %s; protocol imap; }
}
`, ngxMailModule, dir, dir, authAddr, secret, addr)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nginx", "-c", cf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	// Its own process group: the workers go with the master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testenv.WaitPort(ctx, addr); err != nil {
		t.Fatalf("nginx did not listen on %s: %v", addr, err)
	}
	return addr
}

// TestNginxAuthHTTP: nginx's mail proxy in front of real Dovecot asks
// Legate (listen.auth_http): an app password reaches the mailbox (nginx logs
// in to Dovecot as alice*master), refusals reach the client with their text,
// the audit names nginx's Client-IP, and a request without the secret header
// gets 403 (issue #16.3).
func TestNginxAuthHTTP(t *testing.T) {
	ups := systemtest.StartUpstreams(t, systemtest.UpstreamOptions{Mail: true})
	const secret = "nginx-shared-secret"
	lg := systemtest.StartLegate(t, systemtest.LegateOptions{Upstreams: ups, Mutate: func(c *config.Config) {
		c.Listen.AuthHTTP = "127.0.0.1:0"
		c.AuthHTTP.Header = "X-Auth-Key"
		p := filepath.Join(t.TempDir(), "auth-http.secret")
		if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.AuthHTTP.SecretFile = p
		// nginx talks plain IMAP to the backend it is given.
		c.Upstream.IMAP.Address, c.Upstream.IMAP.TLS = ups.Dovecot.IMAPAddr, config.TLSNone
		c.Policy.AllowPlaintextLoopback = true // curl → nginx is plain, on loopback
		c.Throttle.MaxFailuresPerUser = 3
	}})
	authAddr := lg.Addr("auth_http").String()
	ng := startNginx(t, authAddr, secret)
	alicePW := lg.CreateAppPassword(t, "alice", "Thunderbird")
	bobPW := lg.CreateAppPassword(t, "bob", "Phone")

	// curl, as a mail client would, from 127.0.0.6.
	out, err := exec.Command("curl", "-sS", "--max-time", "20", "--interface", "127.0.0.6",
		"imap://"+ng+"/", "-u", "alice:"+alicePW).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "INBOX") {
		t.Fatalf("curl through nginx with alice's app password: %v\n%s", err, out)
	}

	if got := testenv.IMAPLogin(t, ng, "127.0.0.7", "alice", "wrong"); !strings.Contains(got, "NO") || !strings.Contains(got, "Invalid login or password") {
		t.Errorf("wrong password: %q, want NO Invalid login or password", got)
	}
	pol := *lg.Auth().Policy()
	pol.Admins = []string{"bob"}
	lg.Auth().SetPolicy(&pol)
	if got := testenv.IMAPLogin(t, ng, "127.0.0.7", "bob", bobPW); !strings.Contains(got, "NO") || !strings.Contains(got, "administrators cannot use legacy authentication") {
		t.Errorf("admin: %q, want NO ... administrators cannot use legacy authentication", got)
	}
	pol.Admins, pol.BlockedUsers = nil, []string{"bob"}
	lg.Auth().SetPolicy(&pol)
	if got := testenv.IMAPLogin(t, ng, "127.0.0.7", "bob", bobPW); !strings.Contains(got, "legacy authentication is blocked") {
		t.Errorf("blocked user: %q, want ... legacy authentication is blocked", got)
	}
	for i := 0; i < 2; i++ { // with the first wrong password: 3 failures
		testenv.IMAPLogin(t, ng, "127.0.0.8", "alice", "wrong")
	}
	if got := testenv.IMAPLogin(t, ng, "127.0.0.8", "alice", alicePW); !strings.Contains(got, "Too many failures") {
		t.Errorf("throttled: %q, want ... Too many failures", got)
	}

	// The audit names the client nginx saw, not nginx.
	ctx := context.Background()
	if err := lg.Auth().Store().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := lg.Auth().Store().AuditLog(ctx, store.AuditQuery{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var allowFrom6, denyFrom7 bool
	for _, r := range recs {
		if r.Action != "login" || r.Client != "nginx/imap" || r.Protocol != policy.IMAP {
			continue
		}
		allowFrom6 = allowFrom6 || (r.Outcome == "allow" && r.IP == "127.0.0.6")
		denyFrom7 = denyFrom7 || (r.Outcome == "deny" && r.IP == "127.0.0.7")
	}
	if !allowFrom6 || !denyFrom7 {
		t.Errorf("audit: allow from 127.0.0.6 %v, deny from 127.0.0.7 %v; want both: %+v", allowFrom6, denyFrom7, recs)
	}
	if n := ups.Dovecot.LoginCount("alice"); n < 1 {
		t.Errorf("Dovecot saw %d logins of alice, want the one through nginx", n)
	}

	// Without the shared secret: 403, nothing decided.
	for _, key := range []string{"", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+authAddr+"/auth", nil)
		req.Header.Set("Auth-Method", "plain")
		req.Header.Set("Auth-User", "alice")
		req.Header.Set("Auth-Pass", alicePW)
		req.Header.Set("Auth-Protocol", "imap")
		req.Header.Set("Client-IP", "127.0.0.9")
		if key != "" {
			req.Header.Set("X-Auth-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Auth-Status") != "" {
			t.Errorf("secret %q: got %d Auth-Status %q, want 403 and no answer", key, resp.StatusCode, resp.Header.Get("Auth-Status"))
		}
	}
}
