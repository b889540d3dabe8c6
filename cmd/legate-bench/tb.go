package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
)

// benchTB lets internal/testenv, written for tests, run inside this
// program. testing.TB cannot be implemented outside package testing (it has
// an unexported method), so benchTB embeds a nil testing.TB and overrides
// every method testenv and this program call: Helper, Log(f), Error(f),
// Fatal(f), Skip(f), Fail, FailNow, Failed, Cleanup, TempDir and Name. Any
// other method panics on the nil interface.
//
// Fatalf and Skipf panic with a fatalError that guard turns into an error;
// they must only be called on the goroutine that runs guard.
type benchTB struct {
	testing.TB
	log io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// fatalError is what Fatalf and Skipf panic with.
type fatalError struct{ msg string }

func newBenchTB(log io.Writer) *benchTB { return &benchTB{log: log} }

func (t *benchTB) Helper()      {}
func (t *benchTB) Name() string { return "legate-bench" }

func (t *benchTB) Logf(format string, args ...any) {
	fmt.Fprintf(t.log, "  "+format+"\n", args...)
}

func (t *benchTB) Log(args ...any) { t.Logf("%s", fmt.Sprint(args...)) }

func (t *benchTB) Errorf(format string, args ...any) {
	t.Fail()
	t.Logf("error: "+format, args...)
}

func (t *benchTB) Error(args ...any) { t.Errorf("%s", fmt.Sprint(args...)) }

func (t *benchTB) Fatalf(format string, args ...any) {
	t.Fail()
	panic(fatalError{fmt.Sprintf(format, args...)})
}

func (t *benchTB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }

// Skipf is fatal here: a measurement that cannot run is an error.
func (t *benchTB) Skipf(format string, args ...any) {
	panic(fatalError{"cannot run: " + fmt.Sprintf(format, args...)})
}

func (t *benchTB) Skip(args ...any) { t.Skipf("%s", fmt.Sprint(args...)) }

func (t *benchTB) Fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

func (t *benchTB) FailNow() { t.Fatalf("failed") }

func (t *benchTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// TempDir returns a new directory that close removes.
func (t *benchTB) TempDir() string {
	dir, err := os.MkdirTemp("", "legate-bench-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// guard runs f and returns the message of a Fatalf or Skipf inside it as
// an error. Other panics are passed on.
func (t *benchTB) guard(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = errors.New(fe.msg)
		}
	}()
	f()
	return nil
}

// close runs the cleanups, last registered first, each guarded so that a
// failing one does not stop the others.
func (t *benchTB) close() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		if err := t.guard(f); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
}
