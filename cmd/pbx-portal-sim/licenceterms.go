package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// licenceTermFlags are the flags of `pbx licenses` that set the licence
// terms besides the counts; only those given are sent.
type licenceTermFlags struct {
	higherCoversLower bool
	softOverage       string
	offlineGrace      string
	tolerance         string
	lapseGrace        string
}

func (f *licenceTermFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&f.higherCoversLower, "higher-covers-lower", false,
		"a free licence of a higher profile may hold a user of a lower one (=false withdraws it)")
	fs.StringVar(&f.softOverage, "soft-overage", "",
		"`FACTOR:END`: admit FACTOR (1 to 2) times the counts until END, a duration from the portal's now (72h, 3d) or an RFC 3339 time; none withdraws it")
	fs.StringVar(&f.offlineGrace, "offline-grace", "", "how long the PBX runs without reaching the portal: a `DURATION` such as 10d, or default (the agent's 30 days)")
	fs.StringVar(&f.tolerance, "heartbeat-tolerance", "", "how long after a heartbeat the PBX counts as reached: a `DURATION` such as 5m, or default (the agent's 10 minutes)")
	fs.StringVar(&f.lapseGrace, "lapse-grace", "", "how long a lapsed PBX runs before telephony stops: a `DURATION` such as 7d, or default (the agent's 14 days)")
}

// terms reads the flags the command line gave.
func (f *licenceTermFlags) terms(cmd *cobra.Command) (portalsim.LicenceTerms, error) {
	var t portalsim.LicenceTerms
	fs := cmd.Flags()
	if fs.Changed("higher-covers-lower") {
		v := f.higherCoversLower
		t.HigherCoversLower = &v
	}
	if fs.Changed("soft-overage") {
		so, err := parseSoftOverage(f.softOverage)
		if err != nil {
			return t, fmt.Errorf("--soft-overage: %w", err)
		}
		t.SoftOverage = so
	}
	for _, g := range []struct {
		flag, value string
		out         **portalsim.Duration
	}{
		{"offline-grace", f.offlineGrace, &t.OfflineGrace},
		{"heartbeat-tolerance", f.tolerance, &t.HeartbeatTolerance},
		{"lapse-grace", f.lapseGrace, &t.LapseGrace},
	} {
		if !fs.Changed(g.flag) {
			continue
		}
		d, err := parseGrace(g.value)
		if err != nil {
			return t, fmt.Errorf("--%s: %w", g.flag, err)
		}
		*g.out = &d
	}
	return t, nil
}

// parseGrace reads a grace period: whole seconds, more than 0, or
// "default" for the agent's own.
func parseGrace(s string) (portalsim.Duration, error) {
	if s == "default" {
		return 0, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w, or default for the agent's own", err)
	}
	if d <= 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("%q: give whole seconds, more than 0 (or default for the agent's own)", s)
	}
	return portalsim.Duration(d), nil
}

// parseSoftOverage reads FACTOR:END or none.
func parseSoftOverage(s string) (*portalsim.SoftOverageChange, error) {
	if s == "none" {
		return &portalsim.SoftOverageChange{}, nil
	}
	f, end, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("%q: want FACTOR:END, e.g. 1.1:72h or 1.1:2027-01-31T00:00:00Z, or none", s)
	}
	factor, err := strconv.ParseFloat(f, 64)
	if err != nil || factor < 1 || factor > 2 {
		return nil, fmt.Errorf("factor %q: give a number from 1 to 2, e.g. 1.1 for 10 %% more", f)
	}
	so := &portalsim.SoftOverageChange{Factor: factor}
	if t, err := time.Parse(time.RFC3339, end); err == nil {
		so.Until = &t
		return so, nil
	}
	d, err := parseDuration(end)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("end %q: give a duration from now (72h, 3d) or an RFC 3339 time", end)
	}
	dd := portalsim.Duration(d)
	so.For = &dd
	return so, nil
}

// describeTerms says which licence terms besides the counts are set, or "".
func describeTerms(p portalsim.PBX) string {
	var parts []string
	if p.HigherCoversLower {
		parts = append(parts, "higher covers lower")
	}
	if so := p.SoftOverage; so != nil {
		parts = append(parts, fmt.Sprintf("soft overage ×%g until %s", so.Factor, so.Until.UTC().Format(time.RFC3339)))
	}
	for _, g := range []struct {
		name string
		s    license.Seconds
	}{{"offline grace", p.OfflineGrace}, {"heartbeat tolerance", p.HeartbeatTolerance}, {"lapse grace", p.LapseGrace}} {
		if g.s > 0 {
			parts = append(parts, g.name+" "+formatSeconds(g.s))
		}
	}
	return strings.Join(parts, ", ")
}

// formatSeconds writes whole days as "10d", anything else as Go does.
func formatSeconds(s license.Seconds) string {
	d := s.Duration()
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
