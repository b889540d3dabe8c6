package store

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TEMPORARY: thread CPU time per op, robust against a loaded machine.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestZZCPU(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	creds, err := s.BulkLoad(10_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	wrong := make([]Cred, 4096)
	for i := range wrong {
		wrong[i] = Cred{User: creds[(i*7919)%len(creds)].User, Secret: Generate()}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 200_000
	for round := range 3 {
		for _, impl := range []struct {
			name string
			fn   func(context.Context, string, string) (AppPassword, error)
		}{{"new", s.Verify}} {
			for _, kind := range []string{"hit", "hit-hot", "miss", "miss-spread"} {
				runtime.GC()
				start := threadCPU()
				i := 0
				for range n {
					var c Cred
					switch kind {
					case "hit":
						c = creds[i%len(creds)]
						i += 7919
					case "miss":
						c = Cred{User: "user00001", Secret: "AAAA-BBBB-CCCC-DDDD"}
					case "hit-hot":
						c = creds[i%16]
						i++
					default:
						c = wrong[i%len(wrong)]
						i++
					}
					_, err := impl.fn(ctx, c.User, c.Secret)
					if (err == nil) != (kind[:3] == "hit") {
						t.Fatal(kind, err)
					}
				}
				t.Logf("round %d %s/%s: %v CPU/op", round, impl.name, kind, (threadCPU()-start)/n)
			}
		}
	}
}
