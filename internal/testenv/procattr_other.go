//go:build unix && !linux

package testenv

import "syscall"

// procAttr puts a server in its own process group so Stop can signal it
// and all its children.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// groupAlive reports whether any process of process group pgid exists.
func groupAlive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
