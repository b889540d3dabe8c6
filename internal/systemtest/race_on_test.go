//go:build race

package systemtest

// raceEnabled: the race detector keeps shadow memory and per-goroutine state
// that it does not give back, so RSS comparisons are meaningless under it.
const raceEnabled = true
