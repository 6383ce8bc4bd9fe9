package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
)

func newRunCmd(a *app) *cobra.Command {
	var logLevel string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon",
		Long:  "Run the daemon: activation, heartbeats, enforcement and the local API. systemd starts it as pbx-agent.service.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			// Structured logs on stderr, which journald keeps.
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			cfg, err := a.config()
			if err != nil {
				return err
			}
			ag, err := agent.New(cfg, log, agent.Options{})
			if err != nil {
				return err
			}
			return ag.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	return cmd
}
