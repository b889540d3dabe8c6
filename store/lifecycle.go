package store

import (
	"context"
	"sync"
	"sync/atomic"
)

// Lifecycle keeps a store from being closed under a running operation:
// operations hold it for reading between Begin and End, Shut takes it for
// writing. Both backends embed it; its zero value is open.
type Lifecycle struct {
	mu     sync.RWMutex
	closed atomic.Bool
}

// Begin is called first by every operation that touches the backend. On nil
// the caller must call End when done; otherwise it returns ErrClosed or the
// context's error.
func (l *Lifecycle) Begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.RLock()
	if l.closed.Load() {
		l.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// End ends an operation that Begin admitted.
func (l *Lifecycle) End() { l.mu.RUnlock() }

// Closed reports whether Shut has run.
func (l *Lifecycle) Closed() bool { return l.closed.Load() }

// Shut marks the store closed once running operations have ended. It
// reports false if it was closed already.
func (l *Lifecycle) Shut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false
	}
	l.closed.Store(true)
	return true
}
