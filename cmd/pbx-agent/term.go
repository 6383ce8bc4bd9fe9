package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal: a tty answers the TCGETS
// ioctl. A character device is not enough: /dev/null is one, and a
// prompt or colour written to it would reach a log or a pipe.
func isTerminal(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	tty := false
	if err := rc.Control(func(fd uintptr) {
		_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		tty = err == nil
	}); err != nil {
		return false
	}
	return tty
}
