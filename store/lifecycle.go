package store

import (
	"context"
	"sync"
	"sync/atomic"
)

// lifecycle keeps a store from being closed under a running operation:
// operations hold mu for reading (begin), Close takes it for writing (shut).
// Both backends embed it.
type lifecycle struct {
	mu     sync.RWMutex
	closed atomic.Bool
	// endOp is mu.RUnlock, bound once so begin does not allocate.
	endOp func()
}

func (l *lifecycle) init() { l.endOp = l.mu.RUnlock }

// begin is called first by every operation that touches the backend. It
// returns a release func to defer, or ErrClosed / the context's error.
func (l *lifecycle) begin(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	if l.closed.Load() {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	return l.endOp, nil
}

// shut marks the store closed once running operations have ended. It
// reports false if it was closed already.
func (l *lifecycle) shut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false
	}
	l.closed.Store(true)
	return true
}
