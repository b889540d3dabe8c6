package daemon

import (
	"context"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"github.com/legate-proxy/legate/internal/login/logintest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/policy"
)

// testConfig is a configuration with a static directory and listen.http on
// a free port; policy is inserted under policy:.
func testConfig(dir, policyLines, extra string) string {
	return fmt.Sprintf(`listen:
  http: 127.0.0.1:0
storage:
  path: %s/legate.db
directory:
  type: static
  static:
    users:
      - name: alice
        addresses: [alice@example.com]
policy:
  trusted_networks: [10.0.0.0/8]
%s%s`, dir, policyLines, extra)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tLogger sends the daemon's logs to t.Log.
func tLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startDaemon(t *testing.T, path string) *Daemon {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(context.Background(), cfg, tLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// get fetches path from the daemon's listen.http.
func get(t *testing.T, d *Daemon, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.HTTPAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one series from /metrics, -1 if absent.
func metric(t *testing.T, d *Daemon, series string) float64 {
	t.Helper()
	_, body := get(t, d, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func TestReloadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	good := testConfig(dir, "", "")
	writeFile(t, path, good)
	d := startDaemon(t, path)
	ctx := context.Background()

	c, err := d.Control().CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "laptop", Via: "test"})
	if err != nil {
		t.Fatal(err)
	}
	login := func() login.Result {
		return d.Auth().Login(ctx, login.Request{User: "alice", Secret: c.Secret,
			IP: netip.MustParseAddr("203.0.113.5"), Protocol: policy.IMAP, TLS: true})
	}
	if r := login(); r.Outcome != policy.Allow {
		t.Fatalf("login before reload: got %v (%s), want allow", r.Outcome, r.Rule)
	}

	// A broken file: refused, named by file:line, old configuration kept.
	broken := good + "  block_legacy_auth: maybe\n"
	writeFile(t, path, broken)
	line := strings.Count(broken, "\n")
	err = d.ReloadFile(path)
	if want := fmt.Sprintf("%s:%d:", path, line); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("reload of a broken file: got %v, want an error naming %s", err, want)
	}
	if r := login(); r.Outcome != policy.Allow {
		t.Errorf("login after a refused reload: got %v (%s), want allow (old config kept)", r.Outcome, r.Rule)
	}
	if got := metric(t, d, `legate_config_reloads_total{result="error"}`); got != 1 {
		t.Errorf("reload errors: got %v, want 1", got)
	}

	// A good file that blocks legacy auth: new logins and explain refuse.
	writeFile(t, path, testConfig(dir, "  block_legacy_auth: true\n", ""))
	if err := d.ReloadFile(path); err != nil {
		t.Fatalf("reload of a good file: %v", err)
	}
	if r := login(); r.Outcome != policy.Refused || r.Rule != policy.RuleLegacyBlocked {
		t.Errorf("login after reload: got %v (%s), want refused (%s)", r.Outcome, r.Rule, policy.RuleLegacyBlocked)
	}
	e, err := d.Control().Explain(ctx, control.ExplainArgs{User: "alice", IP: netip.MustParseAddr("203.0.113.5"),
		Protocol: policy.IMAP, TLS: true, Secret: c.Secret})
	if err != nil || e.Rule != string(policy.RuleLegacyBlocked) {
		t.Errorf("explain after reload: got %+v, %v; want rule %s", e, err, policy.RuleLegacyBlocked)
	}
	for series, want := range map[string]float64{
		`legate_config_reloads_total{result="ok"}`:                                          1,
		`legate_config_reloads_total{result="error"}`:                                       1,
		`legate_logins_total{outcome="allow",protocol="imap",rule="app_password"}`:          2,
		`legate_logins_total{outcome="refused",protocol="imap",rule="legacy_auth_blocked"}`: 1,
		`legate_login_decision_seconds_count{protocol="imap"}`:                              3,
		`legate_app_passwords`:             1,
		`legate_sessions{protocol="imap"}`: 0,
		`legate_audit_dropped_total`:       0, // present: the store's audit counters are wired
	} {
		if got := metric(t, d, series); got != want {
			t.Errorf("%s: got %v, want %v", series, got, want)
		}
	}
	if got := metric(t, d, `legate_store_op_seconds_count{op="verify"}`); got < 3 {
		t.Errorf(`legate_store_op_seconds_count{op="verify"}: got %v, want at least 3`, got)
	}
}

// waitFor polls cond every 100ms up to limit.
func waitFor(limit time.Duration, cond func() bool) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestServeReloadsOnFileChange runs Serve: a change of the file reloads it,
// a broken one is refused with file:line in the log.
func TestServeReloadsOnFileChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	good := testConfig(dir, "", "limits:\n  shutdown_grace: 1s\n")
	writeFile(t, path, good)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *Daemon, 1)
	var logs logintest.LogBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, ServeOptions{ConfigPath: path, Stderr: &logs, Started: func(d *Daemon) { started <- d }})
	}()
	var d *Daemon
	select {
	case d = <-started:
	case err := <-errc:
		t.Fatalf("Serve: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not start")
	}
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve after cancel: got %v, want nil", err)
		}
		t.Log(logs.String())
	}()

	time.Sleep(1100 * time.Millisecond) // a new modification time, even on coarse clocks
	broken := good + "throttle:\n  window: soon\n"
	writeFile(t, path, broken)
	if !waitFor(10*time.Second, func() bool { return metric(t, d, `legate_config_reloads_total{result="error"}`) == 1 }) {
		t.Fatalf("broken file: no refused reload counted; logs:\n%s", logs.String())
	}
	want := fmt.Sprintf("%s:%d:", filepath.Base(path), strings.Count(broken, "\n"))
	if l := logs.String(); !strings.Contains(l, "reload refused") || !strings.Contains(l, want) {
		t.Errorf("logs of a refused reload lack %q:\n%s", want, l)
	}
	if d.config().Throttle.Window.Std() != 10*time.Minute {
		t.Errorf("throttle.window after refused reload: got %v, want the old 10m", d.config().Throttle.Window.Std())
	}

	writeFile(t, path, good+"throttle:\n  window: 5m\n")
	if !waitFor(10*time.Second, func() bool { return metric(t, d, `legate_config_reloads_total{result="ok"}`) == 1 }) {
		t.Fatalf("good file: no reload counted; logs:\n%s", logs.String())
	}
	if got := d.config().Throttle.Window.Std(); got != 5*time.Minute {
		t.Errorf("throttle.window after reload: got %v, want 5m", got)
	}
}

// TestStartFailureUndoes: a start that fails (listen.http taken) releases
// the store, so a second daemon can open it.
func TestStartFailureUndoes(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, path, strings.Replace(testConfig(dir, "", ""), "127.0.0.1:0", busy.Addr().String(), 1))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := Start(context.Background(), cfg, tLogger(t)); err == nil || !strings.Contains(err.Error(), "listen.http") {
		if d != nil {
			d.Close()
		}
		t.Fatalf("Start with listen.http in use: got %v, want an error naming listen.http", err)
	}
	writeFile(t, path, testConfig(dir, "", ""))
	startDaemon(t, path) // fails the test if the store were still held
}

// TestCloseTwice: Shutdown then Close (a drain, then a deferred cleanup) is
// harmless.
func TestCloseTwice(t *testing.T) {
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Storage.Path = filepath.Join(dir, "legate.db")
	cfg.Storage.KeyFile = filepath.Join(dir, "hmac.key")
	d, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close after Shutdown: got %v, want nil", err)
	}
}
