//go:build unix

package portalsim

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on path so that two portals never write
// the same state. The lock goes with the process, so a crash frees it.
func lockDir(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking data folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data folder is in use by another pbx-portal-sim (%s is locked)", path)
		}
		return nil, fmt.Errorf("locking data folder: %w", err)
	}
	return f.Close, nil // closing the file releases the lock
}
