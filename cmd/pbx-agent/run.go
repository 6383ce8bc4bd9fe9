package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
)

func newRunCmd(a *app) *cobra.Command {
	var logLevel, webListen, webConfig string
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
			// node_exporter's flags for the remote metrics listener; New validates.
			if cmd.Flags().Changed("web.listen-address") {
				cfg.Metrics.Listen = webListen
			}
			if cmd.Flags().Changed("web.config.file") {
				cfg.Metrics.WebConfigFile = webConfig
			}
			tel, how, err := telephonyFor(cfg, log, os.Getenv) // telephony.go
			if err != nil {
				return err
			}
			log.Info("telephony enforcement", "by", how)
			ssh, sshHow := sshFor(cfg, log, os.Getenv) // ssh.go
			log.Info("support SSH access", "by", sshHow)
			opts := agent.Options{Telephony: tel, SSH: ssh}
			if wu, err := wmsUpgradesFor(a, cfg, log, os.Getenv); err != nil { // helper_wms.go
				log.Error("WMS upgrades are not available", "err", err)
			} else {
				opts.WMS = wu
				log.Info("WMS upgrades", "by", wu.String())
			}
			ag, err := agent.New(cfg, log, opts)
			if err != nil {
				return err
			}
			return ag.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	cmd.Flags().StringVar(&webListen, "web.listen-address", "", "`ADDRESS` of a listener serving /metrics alone, for remote scraping (overrides metrics.listen)")
	cmd.Flags().StringVar(&webConfig, "web.config.file", "", "exporter-toolkit web configuration `FILE` (TLS, basic auth) for that listener (overrides metrics.web_config_file)")
	return cmd
}
