package systemtest

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// usage is a snapshot of the test process's resources.
type usage struct {
	Goroutines int
	FDs        int
	RSSKiB     int
	HeapKiB    int // runtime.MemStats.HeapInuse
}

// measure collects garbage, returns memory to the OS and takes a snapshot.
func measure(t testing.TB) usage {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count fds: %v", err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{Goroutines: runtime.NumGoroutine(), FDs: len(ents), RSSKiB: rssKiB(t), HeapKiB: int(ms.HeapInuse >> 10)}
}

// rssKiB reads VmRSS from /proc/self/status.
func rssKiB(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// waitSettled polls until the goroutine and fd counts are at most base plus
// slack, or timeout; it returns the last snapshot.
func waitSettled(t testing.TB, base usage, slackG, slackFD int, timeout time.Duration) usage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		u := measure(t)
		if (u.Goroutines <= base.Goroutines+slackG && u.FDs <= base.FDs+slackFD) || time.Now().After(deadline) {
			return u
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// goroutineDump is the stack of every goroutine, for leak reports.
func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
