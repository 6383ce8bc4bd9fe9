//go:build !unix

package portalsim

// lockDir does nothing where flock is unavailable: run one portal per folder.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }
