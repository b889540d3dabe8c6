//go:build race

package imap_test

// raceEnabled turns off memory budgets: the race detector inflates memory.
const raceEnabled = true
