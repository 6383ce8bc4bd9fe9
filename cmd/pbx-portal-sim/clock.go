package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

func newClockCmd(e *env, client clientFunc) *cobra.Command {
	show := func(c *portalsim.Clock) error {
		_, err := fmt.Fprintln(e.stdout, c.Now.UTC().Format(time.RFC3339))
		return err
	}
	clock := &cobra.Command{
		Use:   "clock",
		Short: "Print the portal's time; move it with advance or set",
		Long: "Print the portal's time. The portal's clock is the real clock plus an offset that\n" +
			"advance and set move; agents follow it through the time in signed answers.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client().Clock(cmd.Context())
			if err != nil {
				return err
			}
			return show(c)
		},
	}
	clock.AddCommand(&cobra.Command{
		Use:   "advance DURATION",
		Short: "Move the portal's clock forward: 6d, 1d12h, 90m",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDuration(args[0])
			if err != nil {
				return err
			}
			c, err := client().AdvanceClock(cmd.Context(), d)
			if err != nil {
				return err
			}
			return show(c)
		},
	})
	clock.AddCommand(&cobra.Command{
		Use:   "set TIME",
		Short: "Set the portal's clock: 2026-11-30T10:00:00Z",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := time.Parse(time.RFC3339, args[0])
			if err != nil {
				return fmt.Errorf("time %q: want RFC 3339, e.g. 2026-11-30T10:00:00Z", args[0])
			}
			c, err := client().SetClock(cmd.Context(), t)
			if err != nil {
				return err
			}
			return show(c)
		},
	})
	return clock
}

// parseDuration reads a Go duration with an optional leading number of
// days: "6d", "1d12h", "90m"; a leading "-" moves the clock back.
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("duration %q: want days and/or a Go duration, e.g. 6d, 1d12h, 90m", s)
	rest, neg := strings.CutPrefix(strings.TrimSpace(s), "-")
	var d time.Duration
	days, after, hasDays := strings.Cut(rest, "d")
	if hasDays {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, bad
		}
		d, rest = time.Duration(n)*24*time.Hour, after
	}
	if rest != "" || !hasDays {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, bad
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}
