package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/journallog"
)

func newRunCmd(a *app) *cobra.Command {
	var logLevel, webListen, webConfig string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon",
		Long:  "Run the daemon: activation, heartbeats, enforcement and the local API. systemd starts it as pbx-agent.service.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			started := time.Now() // pbx_agent_start_time_seconds
			// load reads the configuration with run's flags over it; a
			// reload (SIGHUP) calls it again.
			load := func() (agent.Config, error) {
				cfg, err := a.config()
				if err != nil {
					return cfg, err
				}
				if cmd.Flags().Changed("log-level") {
					cfg.Log.Level = logLevel
				}
				// node_exporter's flags for the remote metrics listener; New validates.
				if cmd.Flags().Changed("web.listen-address") {
					cfg.Metrics.Listen = webListen
				}
				if cmd.Flags().Changed("web.config.file") {
					cfg.Metrics.WebConfigFile = webConfig
				}
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			lvl, err := cfg.LogLevel()
			if err != nil {
				return fmt.Errorf("--log-level or log.level %q: use debug, info, warn or error", cfg.Log.Level)
			}
			level := new(slog.LevelVar)
			level.Set(lvl)
			log := slog.New(logHandler(a.stderr, os.Getenv("JOURNAL_STREAM"), level))
			tel, how, err := telephonyFor(cfg, log, os.Getenv) // telephony.go
			if err != nil {
				return err
			}
			log.Info("telephony enforcement", "by", how)
			ssh, sshHow := sshFor(cfg, log, os.Getenv) // ssh.go
			log.Info("support SSH access", "by", sshHow)
			opts := agent.Options{Telephony: tel, SSH: ssh, Reload: load, LogLevel: level, Started: started}
			if opts.Time, err = testTimeSource(os.Getenv, log); err != nil { // testclock.go: nil when shipped
				return err
			}
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
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error (overrides log.level)")
	cmd.Flags().StringVar(&webListen, "web.listen-address", "", "`ADDRESS` of a listener serving /metrics alone, for remote scraping (overrides metrics.listen)")
	cmd.Flags().StringVar(&webConfig, "web.config.file", "", "exporter-toolkit web configuration `FILE` (TLS, basic auth) for that listener (overrides metrics.web_config_file)")
	return cmd
}

// logHandler is the daemon's log handler. When systemd connected stderr to
// the journal, entries go to the journal natively: levels as priorities,
// attributes as fields, no timestamp of ours. Elsewhere (a terminal, a
// file, a test), slog's text on stderr.
func logHandler(stderr io.Writer, journalStream string, level slog.Leveler) slog.Handler {
	if f, ok := stderr.(*os.File); ok {
		if under, err := journallog.IsJournalStream(journalStream, f); under && journal.Enabled() {
			return journallog.New(journal.Send, journallog.Options{Level: level, Identifier: "pbx-agent", Fallback: stderr})
		} else if err != nil {
			fmt.Fprintf(stderr, "pbx-agent: logging as text: %v\n", err)
		}
	}
	return slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
}
