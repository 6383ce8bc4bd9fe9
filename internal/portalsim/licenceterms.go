package portalsim

import (
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// LicenceTerms are the licence fields the agent honours besides the
// counts: the higher-profile cover, the soft overage and the grace periods.
// A field left out (nil) keeps its value; each set one is checked here and
// the licence as a whole by license.Document.Validate, so the portal never
// signs a licence the agent would refuse.
type LicenceTerms struct {
	HigherCoversLower *bool `json:"higher_covers_lower,omitempty"`
	// SoftOverage grants an allowance over the counts; a factor of 0
	// withdraws it.
	SoftOverage *SoftOverageChange `json:"soft_overage,omitempty"`
	// The grace periods, in whole seconds; 0 leaves the field out of the
	// licence, so the agent's default holds (30 days, 10 minutes, 14 days).
	OfflineGrace       *Duration `json:"offline_grace,omitempty"`
	HeartbeatTolerance *Duration `json:"heartbeat_tolerance,omitempty"`
	LapseGrace         *Duration `json:"lapse_grace,omitempty"`
}

// SoftOverageChange is a soft overage as the admin API takes it: a factor
// from 1 to 2 (0 withdraws the overage), until a time or for a duration
// from the portal's now, one of them.
type SoftOverageChange struct {
	Factor float64    `json:"factor"`
	Until  *time.Time `json:"until,omitempty"`
	For    *Duration  `json:"for,omitempty"`
}

func (t LicenceTerms) empty() bool {
	return t.HigherCoversLower == nil && t.SoftOverage == nil && t.OfflineGrace == nil &&
		t.HeartbeatTolerance == nil && t.LapseGrace == nil
}

// change is the licence change of c at the portal's now: the counts it
// names, then its terms.
func (c LicenseChange) change(now time.Time) func(*license.Document) error {
	return func(d *license.Document) error {
		if len(c.Profiles) > 0 {
			if err := mergeCounts(c.Profiles)(d); err != nil {
				return err
			}
		}
		return c.LicenceTerms.apply(d, now)
	}
}

// apply sets the terms on d, refusing a value the agent would refuse or
// misread, with the field's name and what to give instead.
func (t LicenceTerms) apply(d *license.Document, now time.Time) error {
	if t.HigherCoversLower != nil {
		d.HigherCoversLower = *t.HigherCoversLower
	}
	if so := t.SoftOverage; so != nil {
		v, err := so.resolve(now)
		if err != nil {
			return errBadRequest("%v", err)
		}
		d.SoftOverage = v
	}
	for _, g := range []struct {
		name string
		in   *Duration
		out  *license.Seconds
	}{
		{"offline_grace", t.OfflineGrace, &d.OfflineGrace},
		{"heartbeat_tolerance", t.HeartbeatTolerance, &d.HeartbeatTolerance},
		{"lapse_grace", t.LapseGrace, &d.LapseGrace},
	} {
		if g.in == nil {
			continue
		}
		v := time.Duration(*g.in)
		if v < 0 || v%time.Second != 0 {
			return errBadRequest("%s %v: give whole seconds, 0 or more (0 leaves it to the agent's default)", g.name, v)
		}
		*g.out = license.Seconds(v / time.Second)
	}
	return nil
}

// resolve turns the change into the licence's soft overage at now: nil
// withdraws it.
func (s SoftOverageChange) resolve(now time.Time) (*license.SoftOverage, error) {
	if s.Factor == 0 {
		if s.Until != nil || s.For != nil {
			return nil, fmt.Errorf("soft_overage: a factor of 0 withdraws the overage and takes no end")
		}
		return nil, nil
	}
	if s.Factor < 1 || s.Factor > 2 {
		return nil, fmt.Errorf("soft_overage factor %g: give 1 to 2, e.g. 1.1 for 10 %% more (0 withdraws it)", s.Factor)
	}
	var until time.Time
	switch {
	case (s.Until == nil) == (s.For == nil):
		return nil, fmt.Errorf("soft_overage: give its end as until (a time) or for (a duration), one of them")
	case s.For != nil:
		until = now.Add(time.Duration(*s.For))
	default:
		until = *s.Until
	}
	until = until.UTC().Truncate(time.Second)
	if !until.After(now) {
		return nil, fmt.Errorf("soft_overage until %s: it is not after the portal's now (%s); give a later end",
			until.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if err := license.CheckTime("soft_overage.until", until); err != nil {
		return nil, err
	}
	return &license.SoftOverage{Factor: s.Factor, Until: until}, nil
}
