package cli

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// noEcho turns off echo when r is a terminal and returns the function that
// turns it back on; nil when r is not a terminal (a pipe, a file).
func noEcho(r io.Reader) (restore func()) {
	f, ok := r.(*os.File)
	if !ok {
		return nil
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
