//go:build !linux

package slotfile

import "os"

func datasync(f *os.File) error { return f.Sync() }
