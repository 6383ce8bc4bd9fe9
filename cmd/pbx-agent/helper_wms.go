package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/actions"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// newWMSUpgradeCmd is `pbx-agent helper wms-upgrade VERSION`, which
// pbx-agent-wms-upgrade@VERSION.service runs as root.
func newWMSUpgradeCmd(a *app) *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "wms-upgrade VERSION",
		Short: "Upgrade the WMS to VERSION (run by pbx-agent-wms-upgrade@VERSION.service)",
		Long: `Upgrades the WMS package (upgrade.package) to VERSION, as the agent asked in
<runtime_dir>/wms-upgrade/VERSION.json: from the request's repository (apt
source from upgrade.repo_url, Signed-By upgrade.keyring), after a backup
(upgrade.backup_hook), with a health check (upgrade.health_url,
upgrade.health_command) and a rollback to the version installed before when
it fails; then holds the package. The result goes to
<upgrade.result_dir>/VERSION.json, where the agent reads it. Exits 0 only when
VERSION is installed and healthy. See docs/wms-upgrade.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := args[0]
			if _, err := wms.ParseVersion(version); err != nil {
				return err
			}
			cfg, err := a.config()
			if err != nil {
				return err
			}
			h := cfg.WMSUpgradeConfig()
			h.Root = root
			h.Output = a.stderr
			h.ResultGID = agentGroup(cfg.RuntimeDir)
			// Its unit's stderr is the journal: priorities there too (run.go).
			log := slog.New(logHandler(a.stderr, os.Getenv("JOURNAL_STREAM"), slog.LevelInfo)).With("component", "wms-upgrade")
			res, err := actions.UpgradeWMS(cmd.Context(), h, version, log)
			if res != nil {
				printWMSResult(a.stdout, h.Package, res)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&root, "root", "", "install into the dpkg database under `FOLDER` instead of the system's (tests, image builds)")
	_ = cmd.Flags().MarkHidden("root")
	return cmd
}

// agentGroup is the group that owns the agent's runtime folder: the group
// the result files are given, so that the agent can read them. -1 (leave
// as is) when not root or the folder is missing.
func agentGroup(runtimeDir string) int {
	if os.Geteuid() != 0 {
		return -1
	}
	fi, err := os.Stat(runtimeDir)
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}

// printWMSResult prints one line saying how the upgrade went.
func printWMSResult(w io.Writer, pkg string, r *wms.Result) {
	line := fmt.Sprintf("%s %s: %s", pkg, r.Version, r.Outcome)
	if r.Previous != "" && r.Installed != "" {
		line += fmt.Sprintf("; %s was installed, %s is", r.Previous, r.Installed)
	}
	if r.Recovered {
		line += "; an interrupted dpkg run was finished first"
	}
	if r.Held {
		line += "; held"
	}
	fmt.Fprintln(w, line)
}

// wmsUpgradesFor chooses how the daemon runs WMS upgrades: under systemd,
// pbx-agent-wms-upgrade@<version>.service over D-Bus (the production
// path); otherwise this program's own helper verb as a child process,
// with the same configuration file.
func wmsUpgradesFor(a *app, cfg agent.Config, log *slog.Logger, getenv func(string) string) (*actions.WMSUpgrades, error) {
	log = log.With("component", "wms-upgrade")
	h := cfg.WMSUpgradeConfig()
	if underSystemd(getenv) {
		return actions.NewSystemdWMSUpgrades(h, actions.DialSystemBus, log), nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program for the WMS upgrade helper: %w", err)
	}
	return actions.NewProcessWMSUpgrades(h, []string{exe, "--config", a.configPath, "helper", "wms-upgrade"}, a.stderr, log)
}
