package slotfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync waits for f's data to reach the disk: fdatasync(2), which
// skips the metadata a rewrite in place does not change.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
