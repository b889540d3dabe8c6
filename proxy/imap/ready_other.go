//go:build !unix

package imap

import "net"

// readiness returns nil: without a portable way to wait for a socket to
// become readable, every source reads into a small buffer.
func readiness(net.Conn) func() error { return nil }
