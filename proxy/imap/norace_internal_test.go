//go:build !race

package imap

// raceEnabled turns off CPU budgets: the race detector inflates CPU time.
const raceEnabled = false
