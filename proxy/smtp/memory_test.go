package smtp

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// writeBody streams a deterministic message body of about size bytes
// (76-character CRLF lines, some starting with a dot) to w, dot-stuffed if
// stuff is set, and returns the SHA-256 and length of the unstuffed body.
func writeBody(w io.Writer, size int, stuff bool) ([32]byte, int64, error) {
	bw := bufio.NewWriterSize(w, 32<<10)
	h := sha256.New()
	var n int64
	line := make([]byte, 0, 80)
	for i := 0; n < int64(size); i++ {
		line = line[:0]
		if i%50 == 0 {
			line = append(line, '.')
		}
		line = fmt.Appendf(line, "%08d ", i)
		for len(line) < 76 {
			line = append(line, byte('a'+(i+len(line))%26))
		}
		line = append(line, '\r', '\n')
		h.Write(line)
		n += int64(len(line))
		if stuff && line[0] == '.' {
			if err := bw.WriteByte('.'); err != nil {
				return [32]byte{}, 0, err
			}
		}
		if _, err := bw.Write(line); err != nil {
			return [32]byte{}, 0, err
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n, bw.Flush()
}

// heapPeak samples runtime.MemStats.HeapInuse every 10ms until stop is
// called, and returns the peak minus the baseline taken after a GC at the
// start.
func heapPeak() (stop func() (baseline, peak uint64)) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var max atomic.Uint64
	max.Store(base)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > max.Load() {
					max.Store(ms.HeapInuse)
				}
			}
		}
	}()
	return func() (uint64, uint64) {
		close(done)
		wg.Wait()
		return base, max.Load()
	}
}

// TestLargeMessageStreamed relays a 50 MB message through the in-process
// proxy to the in-process fake upstream and checks it arrives intact while
// the heap grows by at most 8 MB (proxy, fake upstream and the streaming
// test client together).
func TestLargeMessageStreamed(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB relay")
	}
	e := newEnv(t)
	rc := e.dialAuthed("alice")
	size := 50_000_000
	if raceEnabled {
		size = 5_000_000
	}
	rc.cmd(fmt.Sprintf("MAIL FROM:<alice@example.com> SIZE=%d", size), 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	stop := heapPeak()
	_ = rc.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	sum, n, err := writeBody(rc.conn, size, true)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(rc.conn, ".\r\n")
	_ = rc.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	if code, msg, err := rc.tp.ReadResponse(250); err != nil {
		t.Fatalf("end of DATA: got %d %q (%v), want 250", code, msg, err)
	}
	base, peak := stop()
	growth := int64(peak) - int64(base)
	t.Logf("%d MB relay: HeapInuse baseline %.1f MiB, peak %.1f MiB, growth %.2f MiB", size/1_000_000, mib(base), mib(peak), float64(growth)/(1<<20))
	if growth > 8<<20 {
		t.Errorf("heap growth during a %d MB relay: got %.2f MiB, want <= 8 MiB", size/1_000_000, float64(growth)/(1<<20))
	}
	msgs := e.up.messages()
	if len(msgs) != 1 || msgs[0].Len != n || msgs[0].SHA != sum {
		t.Fatalf("upstream got %d messages (len %v), want 1 of %d bytes with the same SHA-256", len(msgs), lens(msgs), n)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func lens(ms []upMsg) []int64 {
	var l []int64
	for _, m := range ms {
		l = append(l, m.Len)
	}
	return l
}

// TestNoGoroutineLeak runs sessions of every kind and checks that closing
// the server leaves no goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	e := newEnv(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for i := 0; i < 3; i++ {
		rc := e.dialAuthed("alice")
		rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
		rc.cmd("RCPT TO:<x@example.net>", 250, "")
		fmt.Fprint(rc.conn, "BDAT 6\r\nhello\n") // CHUNKING: Data runs on a go-smtp goroutine
		rc.expect(250, "")
		rc.cmd("BDAT 0 LAST", 250, "")
		rc.cmd("QUIT", 221, "")
	}
	// Mid-BDAT disconnect, mid-DATA disconnect, idle pre-auth, killed.
	rc := e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	fmt.Fprint(rc.conn, "BDAT 100\r\nonly part")
	rc.conn.Close()
	rc = e.dialAuthed("alice")
	rc.cmd("MAIL FROM:<alice@example.com>", 250, "")
	rc.cmd("RCPT TO:<x@example.net>", 250, "")
	rc.cmd("DATA", 354, "")
	fmt.Fprint(rc.conn, "partial")
	rc.conn.Close()
	e.dialRaw()
	e.dialAuthed("alice")
	e.reg.KillUser("alice")
	waitFor(t, 5*time.Second, "upstream sessions to end", func() bool { return e.up.live.Load() == 0 })
	if n := e.up.abortedCount(); n != 2 {
		t.Errorf("aborted upstream transactions: got %d, want 2", n)
	}
	if n := len(e.up.messages()); n != 3 {
		t.Errorf("upstream messages: got %d, want 3", n)
	}
	if err := e.srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
