//go:build !linux

package clockmark

import "os"

func datasync(f *os.File) error { return f.Sync() }
