package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// session is one load-generating connection: op runs one unit of work
// (a command, a message, a whole login) and close ends the session.
type session struct {
	op    func() error
	close func()
}

// opener opens load session i.
type opener func(i int) (session, error)

// compare measures several ways of doing the same work (direct, relay,
// Legate) and returns ops per second for each. The time d is split into
// rounds that take turns, so that a change of background load on a busy
// machine spreads over all of them instead of favouring one.
func compare(ctx context.Context, n int, d time.Duration, opens ...opener) ([]float64, error) {
	rounds := 3
	if d < time.Second {
		rounds = 1
	}
	ops := make([]int64, len(opens))
	took := make([]time.Duration, len(opens))
	for r := range rounds {
		for k := range opens {
			i := (k + r) % len(opens) // rotate who goes first
			o, e, err := runLoad(ctx, n, d/time.Duration(rounds), opens[i])
			if err != nil {
				return nil, err
			}
			ops[i] += o
			took[i] += e
		}
	}
	rates := make([]float64, len(opens))
	for i := range opens {
		rates[i] = float64(ops[i]) / took[i].Seconds()
	}
	return rates, nil
}

// runLoad opens n sessions (untimed), then runs op on all of them at
// once for d and returns the completed ops and the wall time they took
// (the last op may end after d; its time counts). The first error of any
// session stops the measurement.
func runLoad(ctx context.Context, n int, d time.Duration, open opener) (int64, time.Duration, error) {
	sessions := make([]session, 0, n)
	defer func() {
		for _, s := range sessions {
			if s.close != nil {
				s.close()
			}
		}
	}()
	for i := range n {
		s, err := open(i)
		if err != nil {
			return 0, 0, fmt.Errorf("open session %d: %w", i, err)
		}
		sessions = append(sessions, s)
	}
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		ops      atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				if err := s.op(); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return ops.Load(), elapsed, nil
}

// noClose is a session close that does nothing.
func noClose() {}

// named prefixes the errors of open and of its sessions' ops with name.
func named(name string, open opener) opener {
	return func(i int) (session, error) {
		s, err := open(i)
		if err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
		op := s.op
		s.op = func() error {
			if err := op(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
		return s, nil
	}
}
