//go:build unix

package state

import (
	"errors"
	"os"
	"syscall"
)

// openNoFollow opens path for reading, refusing a symlink as its last
// element (ELOOP) and never blocking on a FIFO planted under its name.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

func isSymlinkErr(err error) bool { return errors.Is(err, syscall.ELOOP) }
