package systemtest

import (
	"context"
	"fmt"
	"github.com/legate-proxy/legate/internal/login"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/policy"
)

// TestThrottleEndToEnd hammers alice over the real IMAP front-end until
// Legate answers NO [UNAVAILABLE], then checks that the block is confined to
// what it should be: alice from another network still gets in; bob from
// the same client gets in until the client itself has too many failures,
// and from then on nobody does from that client.
func TestThrottleEndToEnd(t *testing.T) {
	t.Parallel()
	const perUser, perIP = 3, 5
	lg := StartLegate(t, LegateOptions{Mutate: func(c *config.Config) {
		c.Policy.AllowPlaintextLoopback = true
		c.Throttle.MaxFailuresPerUser = perUser
		c.Throttle.MaxFailuresPerIP = perIP
	}})
	alicePW := lg.CreateAppPassword(t, "alice", "Laptop")
	bobPW := lg.CreateAppPassword(t, "bob", "Phone")
	addr := lg.AddrOf(t, "imap")
	imapLogin := func(tag, user, pw string) string {
		t.Helper()
		c, _ := DialIMAP(t, addr, nil)
		ans, err := c.Login(tag, user, pw, 20*time.Second)
		if err != nil {
			t.Fatalf("%s LOGIN %s: %v", tag, user, err)
		}
		c.Conn.Close()
		return ans
	}

	// Hammer alice until throttled.
	var tries int
	for tries = 1; tries <= 10; tries++ {
		ans := imapLogin(fmt.Sprintf("h%d", tries), "alice", "WRNG-WRNG-WRNG-WRNG")
		if strings.HasPrefix(ans, "NO [UNAVAILABLE]") {
			break
		}
		if !strings.HasPrefix(ans, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("wrong password try %d: got %q, want NO [AUTHENTICATIONFAILED]", tries, ans)
		}
	}
	if tries != perUser+1 {
		t.Fatalf("got NO [UNAVAILABLE] at try %d, want at try %d (max_failures_per_user %d)", tries, perUser+1, perUser)
	}
	// The right password from the same network is refused too: the secret
	// is not even checked.
	if ans := imapLogin("r1", "alice", alicePW); !strings.HasPrefix(ans, "NO [UNAVAILABLE]") {
		t.Errorf("alice's right password from 127.0.0.1 while throttled: got %q, want NO [UNAVAILABLE]", ans)
	}

	ctx := context.Background()
	other := netip.MustParseAddr("198.51.100.7")
	// Alice from another network is not locked out of her own account.
	if res := lg.Auth().Login(ctx, login.Request{User: "alice", Secret: alicePW, IP: other, Protocol: policy.IMAP, TLS: true}); !res.Allowed() {
		t.Errorf("alice's right password from %v: got %v/%s, want allow", other, res.Outcome, res.Rule)
	}
	// Bob from the throttled client still gets in: the client has fewer
	// than max_failures_per_ip failures.
	if ans := imapLogin("b1", "bob", bobPW); !strings.HasPrefix(ans, "NO [UNAVAILABLE] Upstream") {
		// The login is allowed; the upstream is a dead address, so the
		// answer is the upstream's UNAVAILABLE, not the throttle's.
		t.Errorf("bob's right password from 127.0.0.1 (client not yet blocked): got %q, want NO [UNAVAILABLE] Upstream...", ans)
	}
	// Two more failures (as bob) bring the client to max_failures_per_ip:
	// now every user is refused from it.
	for i := 0; i < perIP-perUser; i++ {
		if ans := imapLogin(fmt.Sprintf("bw%d", i), "bob", "WRNG-WRNG-WRNG-WRNG"); !strings.HasPrefix(ans, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("bob wrong password %d: got %q, want NO [AUTHENTICATIONFAILED]", i, ans)
		}
	}
	var wg sync.WaitGroup
	answers := make(map[string]string)
	var mu sync.Mutex
	for _, u := range []struct{ user, pw string }{{"bob", bobPW}, {"carol-unknown", bobPW}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ans := imapLogin("x-"+u.user, u.user, u.pw)
			mu.Lock()
			answers[u.user] = fmt.Sprintf("%s (after %v)", ans, time.Since(start).Round(100*time.Millisecond))
			mu.Unlock()
		}()
	}
	// Meanwhile the per-IP block does not reach other clients.
	if res := lg.Auth().Login(ctx, login.Request{User: "bob", Secret: bobPW, IP: other, Protocol: policy.IMAP, TLS: true}); !res.Allowed() {
		t.Errorf("bob's right password from %v: got %v/%s, want allow", other, res.Outcome, res.Rule)
	}
	wg.Wait()
	for user, ans := range answers {
		if !strings.HasPrefix(ans, "NO [UNAVAILABLE] Too many") {
			t.Errorf("%s from the blocked client: got %q, want NO [UNAVAILABLE] Too many failures...", user, ans)
		}
	}
	// The login service agrees: blocked for any user from 127.0.0.1.
	lo := netip.MustParseAddr("127.0.0.1")
	ctx2, cancel := context.WithTimeout(ctx, 100*time.Millisecond) // skip the 5 s delay
	defer cancel()
	if res := lg.Auth().Login(ctx2, login.Request{User: "bob", Secret: bobPW, IP: lo, Protocol: policy.IMAP, TLS: true}); res.Outcome != policy.Throttled {
		t.Errorf("bob from 127.0.0.1 via auth.Service: got %v/%s, want throttled", res.Outcome, res.Rule)
	}
	t.Logf("answers from the blocked client: %v", answers)
}
