package wms

import (
	"errors"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// ErrLifetimeMajor is the refusal of a new major version on a lifetime
// licence.
var ErrLifetimeMajor = errors.New("a lifetime licence may not move to a newer major WMS version")

// CheckTerm applies the portal's rule on billing terms: a PBX with a
// lifetime licence may not move to a newer major version; it must convert
// to a subscription first. installed is the zero Version when no WMS is
// installed (nothing to compare: allowed).
func CheckTerm(term license.Term, installed, target Version) error {
	if term != license.Lifetime || installed.IsZero() || target.Major <= installed.Major {
		return nil
	}
	return fmt.Errorf("%w (%s is major %d, %s major %d): convert the PBX to a monthly or yearly subscription first",
		ErrLifetimeMajor, installed, installed.Major, target, target.Major)
}

// Window is a maintenance window in absolute UTC times: an upgrade may start
// at Start or later, and no later than End.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Position is where a time falls with respect to a window.
type Position int

// The positions.
const (
	Before Position = iota // the window has not opened: wait until Start
	Within                 // the window is open: start now
	After                  // the window has closed: too late
)

func (p Position) String() string {
	switch p {
	case Before:
		return "before"
	case Within:
		return "within"
	case After:
		return "after"
	}
	return fmt.Sprintf("Position(%d)", int(p))
}

// Validate names what is wrong with the window, if anything.
func (w Window) Validate() error {
	switch {
	case w.Start.IsZero() || w.End.IsZero():
		return errors.New("maintenance window: both start and end are needed")
	case !w.End.After(w.Start):
		return fmt.Errorf("maintenance window: end %s is not after start %s", w.End.UTC().Format(time.RFC3339), w.Start.UTC().Format(time.RFC3339))
	}
	return nil
}

// At says where now falls: Before the start, Within [Start, End), or After.
// With Before, the wait is how long until the window opens.
func (w Window) At(now time.Time) (p Position, wait time.Duration) {
	switch {
	case now.Before(w.Start):
		return Before, w.Start.Sub(now)
	case now.Before(w.End):
		return Within, 0
	}
	return After, 0
}
