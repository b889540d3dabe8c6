package systemtest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/store"
)

// etcdPair is two Legate instances sharing one etcd cluster, one prefix and
// one HMAC key file, in front of the same Dovecot.
type etcdPair struct {
	etcd *testenv.Etcd
	a, b *Legate
}

// startEtcdPair starts a 3-member etcd, Dovecot and two daemons A and B
// with storage.backend etcd. A is started first and creates the shared key.
func startEtcdPair(t *testing.T) *etcdPair {
	t.Helper()
	testenv.Require(t, "etcd", "dovecot", "smtp-sink")
	e := testenv.StartEtcd(t, 3)
	ups := StartUpstreams(t, UpstreamOptions{Mail: true})
	key := filepath.Join(t.TempDir(), "shared-hmac.key")
	mutate := func(c *config.Config) {
		c.Storage.Backend = "etcd"
		c.Storage.KeyFile = key
		c.Storage.Etcd = config.Etcd{Endpoints: e.Endpoints(), Prefix: "/legate-systemtest/"}
	}
	p := &etcdPair{etcd: e}
	p.a = StartLegate(t, LegateOptions{Upstreams: ups, Mutate: mutate})
	p.b = StartLegate(t, LegateOptions{Upstreams: ups, Mutate: mutate})
	return p
}

// TestEtcdTwoInstances: two instances share app passwords, revocations and
// the per-user limit through etcd, and survive the loss of one member.
func TestEtcdTwoInstances(t *testing.T) {
	p := startEtcdPair(t)
	t.Run("RevokeOnBClosesIDLEOnA", func(t *testing.T) { testEtcdRevokeAcross(t, p) })
	t.Run("LimitAcrossInstances", func(t *testing.T) { testEtcdLimitAcross(t, p) })
	t.Run("OneMemberKilled", func(t *testing.T) { testEtcdMemberKilled(t, p) })
}

// testEtcdRevokeAcross: an app password created on B logs in on A; revoking
// it on B closes A's IDLE session within 1s and A refuses it afterwards.
func testEtcdRevokeAcross(t *testing.T, p *etcdPair) {
	ctx := context.Background()
	created, err := p.b.Control().CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "Laptop", Via: "cli"})
	if err != nil {
		t.Fatalf("create on B: %v", err)
	}
	// A learns of it through its watch; that takes milliseconds, and is
	// bounded here at one second.
	created0 := time.Now()
	for {
		if _, err := p.a.Auth().Store().Verify(ctx, "alice", created.Secret); err == nil {
			t.Logf("password created on B verifies on A after %v", time.Since(created0))
			break
		}
		if time.Since(created0) > time.Second {
			t.Fatal("password created on B does not verify on A within 1s")
		}
		time.Sleep(time.Millisecond)
	}
	addrA := p.a.AddrOf(t, "imaps")
	ic, _ := DialIMAP(t, addrA, p.a.ClientTLS())
	if ans, err := ic.Login("a", "alice", created.Secret, 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("LOGIN on A with an app password created on B: got %q (%v), want OK", ans, err)
	}
	if ans, _, err := ic.Command("b", "SELECT INBOX", 10*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Fatalf("SELECT on A: got %q (%v), want OK", ans, err)
	}
	fmt.Fprint(ic.Conn, "c IDLE\r\n")
	if l, err := ic.ReadLine(10 * time.Second); err != nil || !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE on A: got %q (%v), want a continuation", l, err)
	}
	waitSessions(t, p.a.Control(), "alice", 1)

	end := watchIMAPEnd(ic)
	start := time.Now()
	res, err := p.b.Control().RevokeAppPasswords(ctx, control.RevokeArgs{User: "alice", ID: created.AppPassword.ID, Via: "cli"})
	returned := time.Now()
	if err != nil {
		t.Fatalf("revoke on B: %v", err)
	}
	if len(res.Revoked) != 1 || res.Revoked[0].ID != created.AppPassword.ID {
		t.Fatalf("revoke on B: got %+v, want exactly %s", res.Revoked, created.AppPassword.ID)
	}
	select {
	case f := <-end:
		how := "* BYE"
		if !f.ok {
			how = fmt.Sprintf("end of connection (%v) without * BYE, after %q", f.err, f.saw)
		}
		afterReturn := f.at.Sub(returned)
		rel := fmt.Sprintf("%v after", afterReturn)
		if afterReturn < 0 {
			rel = fmt.Sprintf("%v before", -afterReturn)
		}
		t.Logf("revoke on B -> A's IDLE session closed by %s %v after Revoke was called, %s Revoke returned (Revoke took %v)",
			how, f.at.Sub(start), rel, returned.Sub(start))
		if afterReturn > time.Second {
			t.Errorf("A's IDLE session closed %v after the revoke on B returned, want within 1s", afterReturn)
		}
	case <-time.After(time.Second):
		t.Errorf("A's IDLE session still open 1s after the revoke on B returned, want * BYE or EOF")
		<-end // the reader's own deadline ends it
	}

	c2, _ := DialIMAP(t, addrA, p.a.ClientTLS())
	if ans, err := c2.Login("a", "alice", created.Secret, 10*time.Second); err != nil || !strings.HasPrefix(ans, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("LOGIN on A with the app password revoked on B: got %q (%v), want NO [AUTHENTICATIONFAILED]", ans, err)
	}
	waitSessions(t, p.a.Control(), "alice", 0)
}

// testEtcdLimitAcross: 80 concurrent creates for bob, half on A and half on
// B, leave exactly the limit (40); every refusal is store.ErrLimit.
func testEtcdLimitAcross(t *testing.T, p *etcdPair) {
	const perInstance = 40
	limit := p.a.Config.Policy.MaxAppPasswordsPerUser
	if limit == 0 {
		limit = 40
	}
	type result struct {
		via string
		err error
	}
	results := make(chan result, 2*perInstance)
	var wg sync.WaitGroup
	start := time.Now()
	for _, inst := range []struct {
		name string
		lg   *Legate
	}{{"A", p.a}, {"B", p.b}} {
		for i := range perInstance {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				_, err := inst.lg.Control().CreateAppPassword(ctx, control.CreateArgs{
					User: "bob", Name: fmt.Sprintf("dev-%s-%02d", inst.name, i), Via: "cli"})
				results <- result{inst.name, err}
			})
		}
	}
	wg.Wait()
	close(results)
	took := time.Since(start)
	ok := map[string]int{}
	var other []string
	for r := range results {
		switch {
		case r.err == nil:
			ok[r.via]++
		case errors.Is(r.err, store.ErrLimit):
		default:
			other = append(other, fmt.Sprintf("%s: %v", r.via, r.err))
		}
	}
	t.Logf("%d concurrent creates in %v: %d succeeded on A, %d on B", 2*perInstance, took, ok["A"], ok["B"])
	if len(other) > 0 {
		t.Errorf("creates failed with an error other than the limit (%d):\n%s", len(other), strings.Join(other, "\n"))
	}
	if got := ok["A"] + ok["B"]; got != limit {
		t.Errorf("successful creates: got %d, want %d (the limit)", got, limit)
	}
	for _, inst := range []struct {
		name string
		lg   *Legate
	}{{"A", p.a}, {"B", p.b}} {
		l, err := inst.lg.Control().ListAppPasswords(context.Background(), "bob")
		if err != nil {
			t.Errorf("list on %s: %v", inst.name, err)
			continue
		}
		if len(l) != limit {
			t.Errorf("list on %s: got %d app passwords for bob, want %d", inst.name, len(l), limit)
		}
	}
}

// testEtcdMemberKilled: with one of three members killed with SIGKILL (the
// leader, the harder case), A still logs in with an app password made
// before and B still creates one.
func testEtcdMemberKilled(t *testing.T, p *etcdPair) {
	ctx := context.Background()
	pw := p.b.CreateAppPassword(t, "alice", "Phone")
	leader := etcdLeader(t, p.etcd)
	p.etcd.Kill(leader)
	killed := time.Now()
	t.Logf("killed etcd member %d (the leader) with SIGKILL", leader)

	c, _ := DialIMAP(t, p.a.AddrOf(t, "imaps"), p.a.ClientTLS())
	ans, err := c.Login("a", "alice", pw, 10*time.Second)
	if err != nil || !strings.HasPrefix(ans, "OK") {
		t.Errorf("LOGIN on A with one etcd member down: got %q (%v), want OK", ans, err)
	} else {
		t.Logf("LOGIN on A OK %v after the kill", time.Since(killed))
	}

	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	t0 := time.Now()
	if _, err := p.b.Control().CreateAppPassword(cctx, control.CreateArgs{User: "alice", Name: "Tablet", Via: "cli"}); err != nil {
		t.Errorf("create on B with one etcd member down: %v (after %v)", err, time.Since(t0))
	} else {
		t.Logf("create on B OK in %v (%v after the kill)", time.Since(t0), time.Since(killed))
	}
}

// etcdLeader returns the index of the member that is the raft leader.
func etcdLeader(t *testing.T, e *testenv.Etcd) int {
	t.Helper()
	eps := e.Endpoints()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		for i, ep := range eps {
			st, err := cli.Status(ctx, ep)
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no etcd leader within 10s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// imapEnd is how an IMAP connection ended.
type imapEnd struct {
	ok  bool      // `* BYE` arrived
	at  time.Time // when it (or the end of the connection) came
	err error     // how the connection ended without it
	saw []string  // untagged lines before the end
}

// watchIMAPEnd reads until `* BYE` or the end of the connection (at most
// 15s).
func watchIMAPEnd(c *RawIMAP) <-chan imapEnd {
	ch := make(chan imapEnd, 1)
	go func() {
		var saw []string
		for {
			l, err := c.ReadLine(15 * time.Second)
			if err != nil {
				ch <- imapEnd{at: time.Now(), err: err, saw: saw}
				return
			}
			if strings.HasPrefix(l, "* BYE") {
				ch <- imapEnd{ok: true, at: time.Now()}
				return
			}
			saw = append(saw, l)
		}
	}()
	return ch
}
