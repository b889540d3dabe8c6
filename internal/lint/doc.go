// Package lint holds the repository's own vet-style checks, run by
// `go test ./internal/lint/`. They type-check every non-test package of the
// module (from the export data `go list -export` leaves in the build cache)
// and flag patterns the house style forbids but `go vet` does not see.
//
// TestNoTypedNilInInterface: a function whose result is an interface must
// not hand back a concrete pointer (or map, slice, chan, func) value that may
// be nil on an error path — the caller gets a non-nil interface holding a nil
// pointer, and its cleanup (`if s != nil { s.Close() }`) panics. See the test
// for the exact heuristic.
package lint
