package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/daemon"
)

// serveChild is the Legate child process: it loads the JSON configuration
// at path, starts the daemon, prints the bound listener addresses as one
// JSON line on stdout and then answers requests read from stdin, one per
// line:
//
//	stats   collect garbage, return memory to the OS, print childStats
//
// It shuts down when stdin ends (the parent closed it or died). Logs go
// to stderr.
func serveChild(path string) int {
	cfg := config.Default()
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "legate-bench serve: %v\n", err)
		return 1
	}
	if path := os.Getenv(cpuProfileEnv); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "legate-bench serve: %v\n", err)
			return 1
		}
		defer stop()
	}
	ctx := context.Background()
	log := daemon.NewLogger(cfg, os.Stderr)
	d, err := daemon.Start(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "legate-bench serve: %v\n", err)
		return 1
	}
	addrs := map[string]string{}
	for _, key := range []string{"imap", "imaps", "submission", "submissions", "ldap", "ldaps"} {
		if a := d.Addr(key); a != nil {
			addrs[key] = a.String()
		}
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(addrs); err != nil {
		d.Close()
		return 1
	}
	answer(out)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil {
		fmt.Fprintf(os.Stderr, "legate-bench serve: shutdown: %v\n", err)
	}
	return 0
}

// cpuProfileEnv names the file the Legate child writes its CPU profile
// to (legate-bench -cpuprofile); the profile covers the child's whole life.
const cpuProfileEnv = "LEGATE_BENCH_CPUPROFILE"

// startCPUProfile starts a CPU profile into path; stop ends it.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// relayChild runs a bare relay to each target, prints a JSON object
// mapping each target to its relay's address, answers requests like
// serveChild and stops when stdin ends.
func relayChild(targets []string) int {
	addrs := map[string]string{}
	var relays []*relay
	defer func() {
		for _, r := range relays {
			r.Close()
		}
	}()
	for _, tg := range targets {
		r, err := startRelay(tg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "legate-bench relay: %v\n", err)
			return 1
		}
		relays = append(relays, r)
		addrs[tg] = r.Addr()
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(addrs); err != nil {
		return 1
	}
	answer(out)
	return 0
}

// answer serves the parent's requests on stdin until it ends.
func answer(out *json.Encoder) {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stats":
			runtime.GC()
			debug.FreeOSMemory()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			_ = out.Encode(childStats{HeapInuse: m.HeapInuse, StackInuse: m.StackInuse,
				Goroutines: runtime.NumGoroutine()})
		default:
			_ = out.Encode(map[string]string{"error": "unknown request"})
		}
	}
}
