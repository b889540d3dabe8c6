package ldap_test

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2EPagedAndStreaming searches 10,000 entries through Legate: a plain
// search ends with slapd's sizeLimitExceeded as sent, paged searches return
// everything (two at once, each pinned to its upstream connection), and
// Legate's heap does not grow with the result.
func TestE2EPagedAndStreaming(t *testing.T) {
	const n = 10000
	checkLeaks(t)
	e := newEnv(t, envOptions{extraEntries: n})
	alicePW, _ := e.appPassword(t, "alice", "laptop")
	bobPW, _ := e.appPassword(t, "bob", "laptop")
	base := "ou=bulk," + e.slapd.BaseDN
	search := func(pw string, extra ...string) (string, int) {
		args := append([]string{"-LLL", "-ZZ", "-x", "-H", e.url(), "-D", "alice", "-y", pw, "-b", base}, extra...)
		args = append(args, "(objectClass=device)", "cn", "serialNumber")
		if pw == bobPW {
			args[6] = "bob"
		}
		return e.run(t, "ldapsearch", args...)
	}

	out, code := search(alicePW)
	if got := strings.Count(out, "dn: cn=entry"); code != 4 || got != 1000 {
		t.Errorf("plain search: exit %d with %d entries, want 4 (sizeLimitExceeded) with 1000", code, got)
	}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var m runtime.MemStats
		var max uint64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				max = 0 + maxU(max, m.HeapInuse)
			}
		}
	}()
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	start := time.Now()
	for i, pw := range []string{alicePW, bobPW} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i] = search(pw, "-E", "pr=250/noprompt")
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	peakInuse := <-peak
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	bytes := 0
	for i := range outs {
		bytes += len(outs[i])
		if got := strings.Count(outs[i], "dn: cn=entry"); codes[i] != 0 || got != n {
			t.Errorf("paged search %d: exit %d with %d entries, want 0 with %d\n%s", i, codes[i], got, n, tail(outs[i]))
		}
	}
	growth := int64(peakInuse) - int64(before.HeapInuse)
	t.Logf("2 concurrent paged searches of %d entries (%d bytes of LDIF) in %v: HeapInuse before %d KiB, peak %d KiB (+%d KiB), after GC %d KiB",
		n, bytes, took.Round(time.Millisecond), before.HeapInuse>>10, peakInuse>>10, growth>>10, after.HeapInuse>>10)
	// Entries stream through a bounded queue; the peak covers garbage not
	// yet collected, not the result set.
	if limit := int64(16 << 20); growth > limit {
		t.Errorf("heap grew by %d KiB during the searches, want under %d KiB", growth>>10, limit>>10)
	}
	if int64(after.HeapInuse)-int64(before.HeapInuse) > 4<<20 {
		t.Errorf("heap after GC grew by %d KiB, want under 4 MiB", (int64(after.HeapInuse)-int64(before.HeapInuse))>>10)
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func tail(s string) string {
	if len(s) > 500 {
		return s[len(s)-500:]
	}
	return s
}
