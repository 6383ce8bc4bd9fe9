// Package wms holds what the agent knows about the PBX's management
// software (WMS) and its upgrades, as pure functions and plain types: the
// version format (major.minor.YYYYMMDD.build), repository names (relNN),
// maintenance windows, the lifetime-licence rule on major versions, and the
// two files an upgrade is run through: the request the agent writes for the
// root helper and the result the helper writes back.
package wms

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrVersion is wrapped by every error of ParseVersion.
var ErrVersion = errors.New("not a WMS version")

// Version is a WMS version, major.minor.YYYYMMDD.build, such as
// 7.02.20250609.3. It keeps the text it was parsed from, which is the
// Debian package version: "7.02" and "7.2" compare equal but name
// different packages.
type Version struct {
	Major, Minor int
	Date         time.Time // the build date, UTC midnight
	Build        int
	text         string
}

// The limits of each part. They match the polkit rule's pattern for the
// upgrade unit's instance (packaging/polkit), so a version that parses can
// always be started.
const (
	maxMajorDigits = 3
	maxMinorDigits = 3
	maxBuildDigits = 6
)

// ParseVersion parses s, naming the first thing wrong with it.
func ParseVersion(s string) (Version, error) {
	bad := func(format string, args ...any) (Version, error) {
		return Version{}, fmt.Errorf("%w: %q: %s (want major.minor.YYYYMMDD.build, e.g. 7.02.20250609.3)",
			ErrVersion, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty")
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return bad("%d dot-separated parts, not 4", len(parts))
	}
	names := [4]string{"major", "minor", "date", "build"}
	widths := [4][2]int{{1, maxMajorDigits}, {1, maxMinorDigits}, {8, 8}, {1, maxBuildDigits}}
	var n [4]int
	for i, p := range parts {
		if p == "" {
			return bad("the %s part is empty", names[i])
		}
		for _, r := range p {
			if r < '0' || r > '9' {
				return bad("the %s part %q is not all digits", names[i], p)
			}
		}
		if lo, hi := widths[i][0], widths[i][1]; len(p) < lo || len(p) > hi {
			if lo == hi {
				return bad("the %s part %q has %d digits, not %d", names[i], p, len(p), lo)
			}
			return bad("the %s part %q has more than %d digits", names[i], p, hi)
		}
		n[i], _ = strconv.Atoi(p) // all digits and short: cannot fail
	}
	date, err := time.Parse("20060102", parts[2])
	if err != nil {
		return bad("the date part %q is not a calendar date", parts[2])
	}
	return Version{Major: n[0], Minor: n[1], Date: date, Build: n[3], text: s}, nil
}

// MustParseVersion is ParseVersion for constants in tests and examples.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String is the version as it was parsed.
func (v Version) String() string { return v.text }

// IsZero reports whether v is the zero Version (nothing parsed).
func (v Version) IsZero() bool { return v.text == "" }

// Compare orders versions by major, minor, date and build, numerically:
// -1 if v is older than w, 0 if the same, +1 if newer.
func (v Version) Compare(w Version) int {
	for _, d := range [4]int{v.Major - w.Major, v.Minor - w.Minor, v.Date.Compare(w.Date), v.Build - w.Build} {
		switch {
		case d < 0:
			return -1
		case d > 0:
			return 1
		}
	}
	return 0
}

// ErrRepository is wrapped by every error of ParseRepository.
var ErrRepository = errors.New("not a WMS repository name")

// ParseRepository checks an upgrade repository's name: "rel" and two
// digits, such as rel70.
func ParseRepository(s string) (string, error) {
	if len(s) != 5 || !strings.HasPrefix(s, "rel") || s[3] < '0' || s[3] > '9' || s[4] < '0' || s[4] > '9' {
		return "", fmt.Errorf("%w: %q: want rel and two digits, e.g. rel70", ErrRepository, s)
	}
	return s, nil
}
