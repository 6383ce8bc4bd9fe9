// Package users counts the PBX's users per licence profile, from the
// source the WMS set-up offers: its SQLite database (the default), a
// command that prints JSON, or an HTTP endpoint that answers JSON.
//
// Every source answers a whole count or an error: a malformed answer (an
// unknown profile, a negative or non-integer count, output that is not the
// expected JSON) is an error that names what is wrong, so the caller keeps
// its last good count.
package users

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Source counts users per profile.
type Source interface {
	// Count returns the number of users of each profile; a profile absent
	// from the map has none.
	Count(ctx context.Context) (license.Counts, error)
	// String names the source for logs and status, e.g. "sqlite /var/lib/wms/users.db".
	String() string
}

// MaxAnswerBytes bounds the JSON a command prints or an endpoint answers.
const MaxAnswerBytes = 1 << 20

// Answer is the JSON a command prints or an HTTP endpoint answers:
//
//	{"profiles": {"uc-premium": 8, "pbx-basic": 2}}
//
// Profiles are ids (or display names, as "UC-Premium"); counts are whole
// numbers, zero or more; a profile left out has no users.
type Answer struct {
	Profiles map[string]json.Number `json:"profiles"`
}

// ParseAnswer decodes and checks an Answer. It refuses anything but one
// JSON object with a "profiles" object of known profiles and whole,
// non-negative counts.
func ParseAnswer(b []byte) (license.Counts, error) {
	if len(b) > MaxAnswerBytes {
		return nil, fmt.Errorf("answer: larger than %d KiB", MaxAnswerBytes>>10)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var a Answer
	if err := dec.Decode(&a); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New(`answer: empty; want {"profiles": {"<profile>": <count>, ...}}`)
		}
		return nil, fmt.Errorf(`answer: not {"profiles": {"<profile>": <count>, ...}}: %w`, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("answer: more than one JSON value")
	}
	if a.Profiles == nil {
		return nil, errors.New(`answer: no "profiles" object; want {"profiles": {"<profile>": <count>, ...}}`)
	}
	c := license.Counts{}
	for name, n := range a.Profiles {
		v, err := n.Int64()
		if err != nil || v < 0 || v > maxCount {
			return nil, fmt.Errorf("answer: profile %q: count %s is not a whole number from 0 to %d", name, n, maxCount)
		}
		if err := add(c, name, v); err != nil {
			return nil, fmt.Errorf("answer: %w", err)
		}
	}
	return c, nil
}

// maxCount bounds one profile's count: far beyond any PBX, and small
// enough that sums cannot overflow.
const maxCount = 1 << 40

// add adds n users of the profile named name to c: an id or a display
// name, in any case; two spellings of one profile add up.
func add(c license.Counts, name string, n int64) error {
	p, err := license.ParseProfile(name)
	if err != nil {
		return err
	}
	if int64(c[p])+n > maxCount {
		return fmt.Errorf("profile %s: more than %d users", p, maxCount)
	}
	c[p] += int(n)
	return nil
}
