package ldap_test

import (
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	ldapproxy "github.com/legate-proxy/legate/proxy/ldap"
	"github.com/legate-proxy/legate/store"
)

// TestSlowReadersCannotStallOthers (#13.3): clients that flood root DSE
// searches and never read their answers must not delay a bound client
// sharing the same upstream connections (its searches stay under 500 ms),
// they are disconnected, and goroutines and memory stay bounded.
func TestSlowReadersCannotStallOthers(t *testing.T) {
	// A non-reading client is disconnected when its queue overflows while
	// it keeps sending, or by the pre-auth timeout once the kernel stops
	// taking its writes (TCP memory pressure can do that before Legate's
	// queue overflows); 5 s keeps the test short.
	e := newEnv(t, envOptions{mutate: func(o *ldapproxy.Options) {
		o.MaxQueuedBytes = 256 << 10
		o.PreauthTimeout = 5 * time.Second
	}})
	_, secret, err := e.store.Create(t.Context(), store.CreateRequest{User: "alice", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	c := dialGoLDAP(t, e.addr)
	if err := c.StartTLS(e.certs.ClientTLS.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind("alice", secret); err != nil {
		t.Fatal(err)
	}
	searchOnce := func() (time.Duration, error) {
		began := time.Now()
		_, err := c.Search(ldap.NewSearchRequest(people, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(uid=bob)", []string{"mail"}, nil))
		return time.Since(began), err
	}
	if _, err := searchOnce(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	goroutines := runtime.NumGoroutine()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Each attacker writes batches of root DSE searches as fast as
	// Legate reads them, with a small receive buffer, and never reads.
	const attackers = 6
	// (message IDs are unique per connection: a reused one would end
	// the connection before its queue fills)
	op := searchOp(str(0x04, ""), num(0x0a, 0), num(0x0a, 0), num(0x02, 0), num(0x02, 0),
		num(0x01, 0), str(0x87, "objectClass"), tl(0x30, str(0x04, "+")))
	batchFrom := func(first int) []byte {
		var b []byte
		for id := first; id < first+200; id++ {
			b = append(b, tl(0x30, []byte{0x02, 3, byte(id >> 16), byte(id >> 8), byte(id)}, op)...)
		}
		return b
	}
	var wg sync.WaitGroup
	ended := make(chan int, attackers)
	stop := make(chan struct{})
	for i := range attackers {
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.(*net.TCPConn).SetReadBuffer(4096)
		defer nc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next := 1; ; next += 200 {
				batch := batchFrom(next)
				select {
				case <-stop:
					return
				default:
				}
				nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, err := nc.Write(batch)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && closedByPeer(nc) {
					err = io.EOF
				}
				if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
					ended <- i
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	// The bound client keeps searching until every attacker has been
	// disconnected by Legate (at most 60 s).
	time.Sleep(200 * time.Millisecond)
	var worst time.Duration
	var all []time.Duration
	timeout := time.Now().Add(60 * time.Second)
	left := attackers
	for left > 0 {
		select {
		case <-ended:
			left--
			continue
		default:
		}
		if time.Now().After(timeout) {
			t.Fatalf("%d slow readers still connected after 60s, want them disconnected", left)
		}
		d, err := searchOnce()
		if err != nil {
			t.Fatalf("search during the attack (after %d searches): %v", len(all), err)
		}
		worst = max(worst, d)
		all = append(all, d)
		time.Sleep(20 * time.Millisecond)
	}
	n := len(all)
	if n == 0 {
		t.Fatal("got no search during the attack, want some")
	}
	// The bound: 500 ms for nine in ten searches. The worst one is only
	// held under the client's 5 s timeout, since the test machines run
	// many jobs on two cores (load averages above 20 were seen; with -race
	// one search took 3.8 s) and a single search can lose the CPU with or
	// without an attack; a stalled demux, the failure this guards against,
	// stalls every search for good (on bae42cb the search times out).
	sorted := slices.Sorted(slices.Values(all))
	if p90 := sorted[len(sorted)*9/10]; p90 >= 500*time.Millisecond || worst >= 5*time.Second {
		t.Errorf("got search latencies p90 %v, worst %v during the attack (%d searches), want p90 < 500ms, worst < 5s", p90, worst, n)
	}
	if _, err := searchOnce(); err != nil {
		t.Errorf("search after the attack: %v", err)
	}
	// Goroutines and memory come back.
	var after runtime.MemStats
	var g int
	for range 50 {
		runtime.GC()
		g = runtime.NumGoroutine()
		if g <= goroutines+4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	runtime.ReadMemStats(&after)
	if g > goroutines+4 {
		t.Errorf("got %d goroutines after the attack, want at most %d", g, goroutines+4)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("heap grew by %d bytes, want under 32 MiB", grew)
	}
	t.Logf("%d searches during the attack, median %v, worst %v; goroutines %d -> %d", n, sorted[len(sorted)/2], worst, goroutines, g)
}

// closedByPeer tells, once writes have stalled, whether Legate closed nc:
// it drains what was sent (the attacker reads only now) and looks for EOF.
func closedByPeer(nc net.Conn) bool {
	buf := make([]byte, 64<<10)
	for {
		nc.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := nc.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}
