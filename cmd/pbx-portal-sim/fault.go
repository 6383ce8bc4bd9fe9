package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

func newFaultCmd(e *env, client clientFunc) *cobra.Command {
	show := func(f *portalsim.Faults) error {
		_, err := fmt.Fprintln(e.stdout, f.String())
		return err
	}
	fault := &cobra.Command{
		Use:   "fault",
		Short: "Print the faults injected into the agent API; change them with set or clear",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := client().Faults(cmd.Context())
			if err != nil {
				return err
			}
			return show(f)
		},
	}

	var (
		errorRate, truncate, badSig, replayOld, rateLimit float64
		latency, retryAfter                               time.Duration
	)
	set := &cobra.Command{
		Use:   "set",
		Short: "Change the faults named by flags; the others stay as they are",
		Long: "Change the faults named by flags; the others stay as they are. Rates are\n" +
			"probabilities from 0 to 1, drawn for each agent request; the admin API is never\n" +
			"faulted. Latency delays every agent request (at most 5m).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			patch := map[string]any{}
			fl := cmd.Flags()
			for flag, field := range map[string]string{
				"error-rate": "error_rate", "truncate": "truncate_rate", "bad-signature": "bad_signature_rate",
				"replay-old": "replay_old_rate", "rate-limit": "rate_limit_rate",
			} {
				if fl.Changed(flag) {
					v, _ := fl.GetFloat64(flag)
					patch[field] = v
				}
			}
			if fl.Changed("latency") {
				patch["latency"] = latency.String()
			}
			if fl.Changed("retry-after") {
				patch["retry_after"] = retryAfter.String()
			}
			if len(patch) == 0 {
				return fmt.Errorf("name at least one fault, e.g. --error-rate 0.5 (see --help)")
			}
			f, err := client().PatchFaults(cmd.Context(), patch)
			if err != nil {
				return err
			}
			return show(f)
		},
	}
	f := set.Flags()
	f.Float64Var(&errorRate, "error-rate", 0, "share of requests answered 500")
	f.DurationVar(&latency, "latency", 0, "delay before every answer")
	f.Float64Var(&truncate, "truncate", 0, "share of signed answers cut in half")
	f.Float64Var(&badSig, "bad-signature", 0, "share of signed answers with a broken signature")
	f.Float64Var(&replayOld, "replay-old", 0, "share of ok answers carrying the previous licence revision")
	f.Float64Var(&rateLimit, "rate-limit", 0, "share of requests answered 429 with Retry-After")
	f.DurationVar(&retryAfter, "retry-after", 0, "Retry-After of those 429s (default 30s)")
	fault.AddCommand(set)

	fault.AddCommand(&cobra.Command{
		Use:   "clear",
		Short: "Stop injecting faults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := client().ClearFaults(cmd.Context()); err != nil {
				return err
			}
			return show(&portalsim.Faults{})
		},
	})
	return fault
}
