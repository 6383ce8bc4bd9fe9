//go:build !pbxtestclock

package main

import (
	"log/slog"

	"github.com/pbx-agent/pbx-agent/pkg/clock"
)

// testTimeSource is nil in the shipped binary: the daemon reads the
// machine's clocks, and nothing configures it otherwise. A build with the
// pbxtestclock tag (testclock_pbxtestclock.go) lets tests move them.
func testTimeSource(func(string) string, *slog.Logger) (clock.Clock, error) {
	return nil, nil
}
