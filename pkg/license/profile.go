package license

import (
	"fmt"
	"sort"
	"strings"
)

// Profile identifies a per-user licence profile. Its string value is the id
// used on the wire, in metrics and in configuration.
type Profile string

// The profiles the portal sells.
const (
	PBXBasic    Profile = "pbx-basic"
	UCEssential Profile = "uc-essential"
	UCBusiness  Profile = "uc-business"
	UCPremium   Profile = "uc-premium"
	UCWizyconf  Profile = "uc-wizyconf"
	PBXService  Profile = "pbx-service"
)

// ProfileInfo describes one profile of the catalogue.
type ProfileInfo struct {
	ID   Profile
	Name string // as shown to people, e.g. "UC-Premium"
	// Tier orders the profiles that may cover one another (basic < essential
	// < business < premium). Zero means the profile stands alone.
	Tier int
}

// catalogue lists every profile in display order.
var catalogue = [...]ProfileInfo{
	{PBXBasic, "PBX-BASIC", 1},
	{UCEssential, "UC-Essential", 2},
	{UCBusiness, "UC-Business", 3},
	{UCPremium, "UC-Premium", 4},
	{UCWizyconf, "UC-Wizyconf", 0},
	{PBXService, "PBX-Service", 0},
}

// Profiles returns the catalogue in display order. The slice is a copy.
func Profiles() []ProfileInfo {
	out := make([]ProfileInfo, len(catalogue))
	copy(out[:], catalogue[:])
	return out
}

// Info returns the catalogue entry of p and whether p is known.
func (p Profile) Info() (ProfileInfo, bool) {
	for _, info := range catalogue {
		if info.ID == p {
			return info, true
		}
	}
	return ProfileInfo{}, false
}

// Valid reports whether p is in the catalogue.
func (p Profile) Valid() bool {
	_, ok := p.Info()
	return ok
}

// Name returns the name shown to people, or the id itself if p is unknown.
func (p Profile) Name() string {
	if info, ok := p.Info(); ok {
		return info.Name
	}
	return string(p)
}

// Covers reports whether a free licence of profile p may hold a user of
// profile q when the portal allows higher profiles to cover lower ones.
// Only the tiered profiles cover one another; every profile covers itself.
func (p Profile) Covers(q Profile) bool {
	if p == q {
		return true
	}
	pi, okp := p.Info()
	qi, okq := q.Info()
	return okp && okq && pi.Tier > 0 && qi.Tier > 0 && pi.Tier > qi.Tier
}

// ParseProfile accepts a profile id ("uc-premium") or its display name
// ("UC-Premium"), case-insensitively.
func ParseProfile(s string) (Profile, error) {
	s = strings.TrimSpace(s)
	for _, info := range catalogue {
		if strings.EqualFold(s, string(info.ID)) || strings.EqualFold(s, info.Name) {
			return info.ID, nil
		}
	}
	return "", fmt.Errorf("unknown profile %q: use one of %s", s, profileList())
}

func profileList() string {
	ids := make([]string, len(catalogue))
	for i, info := range catalogue {
		ids[i] = string(info.ID)
	}
	return strings.Join(ids, ", ")
}

// Counts holds a number of users per profile. A profile absent from the map
// counts zero.
type Counts map[Profile]int

// Validate reports an unknown profile or a negative count.
func (c Counts) Validate() error {
	for _, p := range c.sortedProfiles() {
		if !p.Valid() {
			return fmt.Errorf("unknown profile %q: use one of %s", p, profileList())
		}
		if c[p] < 0 {
			return fmt.Errorf("profile %s: negative count %d", p, c[p])
		}
	}
	return nil
}

// Total is the sum of all counts.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// String renders the counts in catalogue order, e.g. "uc-premium=10 pbx-service=1",
// leaving out zero counts; "none" when all are zero.
func (c Counts) String() string {
	var parts []string
	for _, info := range catalogue {
		if n := c[info.ID]; n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", info.ID, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// sortedProfiles returns the keys in a stable order, so errors are repeatable.
func (c Counts) sortedProfiles() []Profile {
	ps := make([]Profile, 0, len(c))
	for p := range c {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}
