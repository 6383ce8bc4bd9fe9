//go:build !pbxtestclock

package main

import (
	"log/slog"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// testTimeSource is nil in the shipped binary: the daemon reads the
// machine's clocks, and nothing configures it otherwise. A build with the
// pbxtestclock tag (testclock_pbxtestclock.go) lets tests move them.
func testTimeSource(func(string) string, *slog.Logger) (license.TimeSource, error) {
	return nil, nil
}
