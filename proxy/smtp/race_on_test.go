//go:build race

package smtp

// raceEnabled: the race detector makes byte-at-a-time DATA parsing about
// 20 times slower, so the big-message tests send less.
const raceEnabled = true
