package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Etcd is a real etcd cluster (the Debian etcd-server package's etcd binary)
// of one or more members on loopback ports, each in its own temp directory.
// Members can be killed with SIGKILL and started again on the same data
// directory, to test what Legate does when etcd loses members or quorum.
type Etcd struct {
	t       testing.TB
	dir     string
	bin     string
	members []*etcdMember
	cluster string // --initial-cluster
}

type etcdMember struct {
	name       string
	clientAddr string
	peerAddr   string
	dataDir    string
	logPath    string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// StartEtcd starts an etcd cluster of n members and waits until it has a
// leader. It skips the test when the etcd binary is missing (fails when
// CI=true). The cluster is stopped by t.Cleanup.
func StartEtcd(t testing.TB, n int) *Etcd {
	t.Helper()
	Require(t, "etcd")
	bin, _ := LookPath("etcd")
	e := &Etcd{t: t, dir: t.TempDir(), bin: bin}
	var parts []string
	for i := range n {
		m := &etcdMember{
			name:       fmt.Sprintf("m%d", i),
			clientAddr: FreeAddr(t),
			peerAddr:   FreeAddr(t),
		}
		m.dataDir = filepath.Join(e.dir, m.name+".etcd")
		m.logPath = filepath.Join(e.dir, m.name+".log")
		e.members = append(e.members, m)
		parts = append(parts, m.name+"=http://"+m.peerAddr)
	}
	e.cluster = strings.Join(parts, ",")
	t.Cleanup(e.stopAll)
	for i := range e.members {
		if err := e.start(i, "new"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range e.members {
		if err := e.waitHealthy(ctx, i); err != nil {
			t.Fatalf("%v\n%s", err, tail(30, e.members[i].logPath))
		}
	}
	return e
}

// Endpoints returns the client URLs of every member (running or not).
func (e *Etcd) Endpoints() []string {
	out := make([]string, len(e.members))
	for i, m := range e.members {
		out[i] = "http://" + m.clientAddr
	}
	return out
}

// Kill sends SIGKILL to member i and waits until it has exited.
func (e *Etcd) Kill(i int) {
	e.t.Helper()
	m := e.members[i]
	m.mu.Lock()
	p := m.proc
	m.proc = nil
	m.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Restart starts member i again on its data directory (after Kill) and
// waits until its client port answers.
func (e *Etcd) Restart(i int) {
	e.t.Helper()
	if err := e.start(i, "existing"); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := e.members[i]
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if err := p.waitReady(ctx, m.clientAddr); err != nil {
		e.t.Fatalf("%v\n%s", err, tail(30, m.logPath))
	}
}

func (e *Etcd) start(i int, state string) error {
	m := e.members[i]
	args := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", "http://" + m.clientAddr,
		"--advertise-client-urls", "http://" + m.clientAddr,
		"--listen-peer-urls", "http://" + m.peerAddr,
		"--initial-advertise-peer-urls", "http://" + m.peerAddr,
		"--initial-cluster", e.cluster,
		"--initial-cluster-state", state,
		"--initial-cluster-token", "legate-test",
		// Loopback: fast elections keep kill/restart tests short.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--logger", "zap",
		"--log-level", "warn",
	}
	cmd := exec.Command(e.bin, args...)
	cmd.Env = []string{} // no ETCD_* variables from the caller's environment
	p, err := startProcess("etcd "+m.name, cmd, m.logPath)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()
	return nil
}

// waitHealthy waits until member i serves /health with "true".
func (e *Etcd) waitHealthy(ctx context.Context, i int) error {
	m := e.members[i]
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if err := p.waitReady(ctx, m.clientAddr); err != nil {
		return err
	}
	for {
		out, err := getHealth(ctx, "http://"+m.clientAddr+"/health")
		if err == nil && strings.Contains(out, `"true"`) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("testenv: etcd %s exited during startup: %v", m.name, p.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: etcd %s not healthy: %w (last: %s %v)", m.name, ctx.Err(), out, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func getHealth(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return string(b), err
}

func (e *Etcd) stopAll() {
	for _, m := range e.members {
		m.mu.Lock()
		p := m.proc
		m.proc = nil
		m.mu.Unlock()
		if p != nil {
			if err := p.stop(5 * time.Second); err != nil {
				e.t.Log(err)
			}
		}
	}
}
