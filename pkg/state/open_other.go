//go:build !unix

package state

import "os"

// openNoFollow falls back to a plain open where O_NOFOLLOW does not exist;
// readRegular's Lstat and Stat checks still refuse a symlink or a special
// file in all but a narrow race.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

func isSymlinkErr(error) bool { return false }
