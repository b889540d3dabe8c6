package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

// Environment variables that make this binary (or the test binary) run
// as a child process: serveEnv names Legate's configuration file,
// relayEnv lists the targets of bare relays (comma-separated).
const (
	serveEnv = "LEGATE_BENCH_SERVE"
	relayEnv = "LEGATE_BENCH_RELAY"
)

// childMain runs the child process the environment asks for; ok is false
// when this is not a child.
func childMain() (code int, ok bool) {
	if path := os.Getenv(serveEnv); path != "" {
		return serveChild(path), true
	}
	if targets := os.Getenv(relayEnv); targets != "" {
		return relayChild(strings.Split(targets, ",")), true
	}
	return 0, false
}

// childProc is a child process (Legate or the bare relays), controlled
// over its stdin and stdout (see serveChild and relayChild).
type childProc struct {
	cmd     *exec.Cmd
	ctl     *os.File // our end of its stdin: a line per request, EOF stops it
	replies *bufio.Reader
	// Addrs maps listener keys (imap, imaps, submission, ldap, ...; for
	// relays the target addresses) to the bound addresses.
	Addrs   map[string]string
	logPath string
}

// childStats is what the child reports after a forced garbage collection.
type childStats struct {
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Goroutines int    `json:"goroutines"`
}

// procStats are one reading of the child: its own report plus /proc.
type procStats struct {
	childStats
	RSS int64 // VmRSS, bytes
	FDs int   // entries in /proc/<pid>/fd
}

// startLegate writes cfg (JSON) into dir and starts this executable as a
// Legate child with it; listeners given as "127.0.0.1:0" bind free ports,
// reported in Addrs. The child's log (at cfg.Log.Level) goes to a file in
// dir whose tail is shown if it fails. It is stopped by t.Cleanup.
func startLegate(t testing.TB, dir string, cfg *config.Config) *childProc {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("legate config: %v", err)
	}
	cfgPath := filepath.Join(dir, "legate.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatalf("legate config: %v", err)
	}
	return startChild(t, "legate", serveEnv+"="+cfgPath, filepath.Join(dir, "legate.log"))
}

// startRelays starts this executable as a child running a bare relay to
// each target; Addrs maps each target to its relay's address. It is
// stopped by t.Cleanup.
func startRelays(t testing.TB, dir string, targets ...string) *childProc {
	t.Helper()
	return startChild(t, "relay", relayEnv+"="+strings.Join(targets, ","), filepath.Join(dir, "relay.log"))
}

// startChild starts this executable with env added to the environment;
// its stderr goes to logPath.
func startChild(t testing.TB, name, env, logPath string) *childProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p := &childProc{logPath: logPath}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer logf.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p.cmd = exec.Command(exe)
	p.cmd.Env = append(os.Environ(), env)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, logf
	err = p.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		t.Fatalf("%s: start: %v", name, err)
	}
	p.ctl, p.replies = inW, bufio.NewReader(outR)
	t.Cleanup(func() {
		p.stop()
		outR.Close()
	})
	line, err := p.reply(30 * time.Second)
	if err == nil {
		err = json.Unmarshal([]byte(line), &p.Addrs)
	}
	if err != nil {
		t.Fatalf("%s did not start: %v\n%s", name, err, p.logTail())
	}
	return p
}

// reply reads one line from the child, waiting at most d.
func (p *childProc) reply(d time.Duration) (string, error) {
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		l, err := p.replies.ReadString('\n')
		ch <- res{l, err}
	}()
	select {
	case r := <-ch:
		return strings.TrimSpace(r.line), r.err
	case <-time.After(d):
		return "", fmt.Errorf("no answer from the child process within %v", d)
	}
}

// Stats makes the child collect garbage and return freed memory to the
// OS, then reads its RSS and descriptor count.
func (p *childProc) Stats() (procStats, error) {
	var s procStats
	if _, err := p.ctl.WriteString("stats\n"); err != nil {
		return s, fmt.Errorf("child stats: %w", err)
	}
	line, err := p.reply(30 * time.Second)
	if err != nil {
		return s, fmt.Errorf("child stats: %w", err)
	}
	if err := json.Unmarshal([]byte(line), &s.childStats); err != nil {
		return s, fmt.Errorf("child stats: %q: %w", line, err)
	}
	if s.RSS, err = p.statusKB("VmRSS"); err != nil {
		return s, err
	}
	ents, err := os.ReadDir(p.procPath("fd"))
	if err != nil {
		return s, fmt.Errorf("child fds: %w", err)
	}
	s.FDs = len(ents)
	return s, nil
}

// RSS returns the child's current VmRSS in bytes, without collecting
// garbage first.
func (p *childProc) RSS() (int64, error) { return p.statusKB("VmRSS") }

// ResetPeak resets the child's peak RSS (VmHWM) to its current RSS by
// writing 5 to /proc/<pid>/clear_refs (Linux 4.0+).
func (p *childProc) ResetPeak() error {
	return os.WriteFile(p.procPath("clear_refs"), []byte("5"), 0)
}

// Peak returns the child's VmHWM in bytes.
func (p *childProc) Peak() (int64, error) { return p.statusKB("VmHWM") }

func (p *childProc) procPath(name string) string {
	return "/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/" + name
}

// statusKB reads a "Key:   123 kB" line of /proc/<pid>/status, in bytes.
func (p *childProc) statusKB(key string) (int64, error) {
	b, err := os.ReadFile(p.procPath("status"))
	if err != nil {
		return 0, fmt.Errorf("child: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("child: %s %q: %w", key, v, err)
			}
			return n << 10, nil
		}
	}
	return 0, fmt.Errorf("child: no %s in /proc status", key)
}

// stop closes the child's stdin (it shuts down and exits) and waits up to
// ten seconds before killing it.
func (p *childProc) stop() {
	p.ctl.Close()
	done := make(chan struct{})
	go func() {
		p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

func (p *childProc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	return lastLines(string(b), 20)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// benchConfig returns the configuration every Legate child starts from:
// storage in dir, the TLS certificate given, plaintext logins allowed on
// loopback (the load comes from 127.0.0.1), connection limits out of the
// way, info logging (one line per login, as in production).
func benchConfig(dir, certFile, keyFile string) *config.Config {
	cfg := config.Default()
	cfg.Storage.Path = filepath.Join(dir, "legate.db")
	cfg.Storage.KeyFile = filepath.Join(dir, "hmac.key")
	cfg.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	cfg.Policy.AllowPlaintextLoopback = true
	cfg.Limits.MaxConnections = 1 << 20
	cfg.Limits.MaxConnectionsPerIP = 1 << 20
	cfg.Log.Level = "info"
	return cfg
}

// appPassword creates an app password for user in cfg's store (before the
// child opens it) and returns the secret.
func appPassword(ctx context.Context, t testing.TB, cfg *config.Config, user string) string {
	t.Helper()
	st, err := bolt.Open(ctx, bolt.Options{Path: cfg.Storage.Path, KeyFile: cfg.Storage.KeyFile})
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	defer st.Close()
	_, secret, err := st.Create(ctx, store.CreateRequest{User: user, Name: "bench"})
	if err != nil {
		t.Fatalf("store: create app password: %v", err)
	}
	return secret
}

// writeSecret writes a secret file (mode 0600) into dir.
func writeSecret(t testing.TB, dir, name, secret string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatalf("secret file: %v", err)
	}
	return path
}
