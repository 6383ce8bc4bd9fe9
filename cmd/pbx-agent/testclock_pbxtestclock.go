//go:build pbxtestclock

package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// testClockEnv names the file of clock offsets in a pbxtestclock build.
// The shipped binary has no such code: an owner cannot use it.
const testClockEnv = "PBX_TESTCLOCK_FILE"

// testTimeSource, in a pbxtestclock build, returns the machine's clocks
// moved by the offsets in the file $PBX_TESTCLOCK_FILE: one line
// "WALL BOOT", two Go durations added to the wall clock and to the boot
// time ("-720h 0s": the local clock 30 days back). The file is read at
// every reading, so a test moves the clocks of a running agent. Without
// the variable, the machine's clocks.
func testTimeSource(getenv func(string) string, log *slog.Logger) (clock.Clock, error) {
	path := getenv(testClockEnv)
	if path == "" {
		return nil, nil
	}
	s := &offsetTime{path: path, sys: license.NewSystemTime()}
	if err := s.load(); err != nil {
		return nil, err
	}
	log.Warn("TEST BUILD: the licence clock reads offsets from a file", "file", path)
	// Timers run on the machine's: the offsets move the readings only.
	return clock.WithTimers(s), nil
}

type offsetTime struct {
	path string
	sys  *license.SystemTime

	mu         sync.Mutex
	wall, boot time.Duration // the last offsets read
}

// load reads the offsets; a file being rewritten keeps the last ones.
func (s *offsetTime) load() error {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("test clock: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return fmt.Errorf("test clock %s: %q: want two durations, WALL BOOT", s.path, b)
	}
	wall, err1 := time.ParseDuration(f[0])
	boot, err2 := time.ParseDuration(f[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("test clock %s: %q: want two durations, WALL BOOT", s.path, b)
	}
	s.mu.Lock()
	s.wall, s.boot = wall, boot
	s.mu.Unlock()
	return nil
}

func (s *offsetTime) offsets() (wall, boot time.Duration) {
	s.load() // on an error the last offsets stay
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wall, s.boot
}

func (s *offsetTime) Wall() time.Time {
	w, _ := s.offsets()
	return s.sys.Wall().Add(w)
}

func (s *offsetTime) Elapsed() time.Duration {
	_, b := s.offsets()
	return s.sys.Elapsed() + b
}
