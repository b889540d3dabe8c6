package daemon

import (
	"context"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/policy"
)

// snapshotConfig: in A, alice is enabled but blocked by policy; in B she is
// disabled in the directory and not blocked. Either way she is refused; only
// B's policy with A's directory would allow her. In C she is allowed, and
// the IMAP upstream is C's own address; A and B name another.
// (start: neither, to create her app password.)
func snapshotConfig(dir string, variant string) string {
	disabled, blocked, upAddr := "false", "[]", "127.0.0.1:1"
	switch variant {
	case "A":
		blocked = "[alice]"
	case "B":
		disabled = "true"
	case "C":
		upAddr = "127.0.0.1:3"
	}
	return fmt.Sprintf(`listen:
  http: 127.0.0.1:0
storage:
  path: %s/legate.db
directory:
  type: static
  static:
    users:
      - name: alice
        disabled: %s
policy:
  blocked_users: %s
upstream:
%s`, dir, disabled, blocked, upstreamConfig(dir, "imap", upAddr, "none", ""))
}

// TestReloadIsOneSnapshot (issue 14.5): logins racing reloads always see a
// policy, a directory and an upstream of the same configuration.
func TestReloadIsOneSnapshot(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "master.secret"), masterSecret)
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, path, snapshotConfig(dir, "start"))
	d := startDaemon(t, path)
	ctx := context.Background()
	c, err := d.Control().CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "laptop", Via: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var cfgs [3]*config.Config
	for i := range cfgs {
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
		writeFile(t, p, snapshotConfig(dir, []string{"A", "B", "C"}[i]))
		if cfgs[i], err = config.Load(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Reload(cfgs[0]); err != nil { // leave the start configuration before the logins
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mixed, allowed, n atomic.Int64
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := d.Auth().Explain(ctx, login.Request{User: "alice", Secret: c.Secret,
					IP: netip.MustParseAddr("203.0.113.5"), Protocol: policy.IMAP, TLS: true})
				n.Add(1)
				switch {
				case !r.Allowed():
				case r.Upstream == nil || r.Upstream.UpstreamAddress() != "127.0.0.1:3":
					mixed.Add(1) // A's directory with B's policy, or C's policy with another upstream
				default:
					allowed.Add(1)
				}
			}
		})
	}
	for i := range 1500 {
		if err := d.Reload(cfgs[i%3]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if mixed.Load() > 0 {
		t.Errorf("%d of %d logins saw one configuration's policy with another's directory or upstream", mixed.Load(), n.Load())
	}
	if allowed.Load() == 0 {
		t.Errorf("none of %d logins was decided by configuration C, want some", n.Load())
	}
	t.Logf("%d logins during 1500 reloads, %d allowed by C", n.Load(), allowed.Load())
}

// TestRefusedReloadChangesNothing: a reload whose upstreams cannot serve the
// running listeners is refused whole; the old policy stays.
func TestRefusedReloadChangesNothing(t *testing.T) {
	up := fakeUpstream(t, nil)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "master.secret"), masterSecret)
	path := filepath.Join(dir, "legate.yaml")
	withIMAP := strings.Replace(testConfig(dir, "  allow_plaintext_loopback: true\n",
		"upstream:\n"+upstreamConfig(dir, "imap", up.Addr().String(), "none", "")),
		"listen:\n", "listen:\n  imap: 127.0.0.1:0\n", 1)
	writeFile(t, path, withIMAP)
	d := startDaemon(t, path)
	cfg := *d.config() // built in code: config validation would catch it in a file
	cfg.Upstream.IMAP = config.UpstreamMail{}
	cfg.Policy.BlockLegacyAuth = true
	if err := d.Reload(&cfg); err == nil || !strings.Contains(err.Error(), "listen.imap: needs upstream.imap") {
		t.Fatalf("reload without upstream.imap: got %v, want it refused naming listen.imap", err)
	}
	if d.Auth().Policy().BlockLegacyAuth || d.config().Policy.BlockLegacyAuth {
		t.Error("a refused reload changed the policy")
	}
}
