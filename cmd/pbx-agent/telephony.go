package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/actions"
)

// underSystemd reports whether systemd started this process as a unit:
// it sets INVOCATION_ID for every unit, and NOTIFY_SOCKET for Type=notify.
func underSystemd(getenv func(string) string) bool {
	return getenv("INVOCATION_ID") != "" || getenv("NOTIFY_SOCKET") != ""
}

// telephonyFor chooses how the daemon stops and starts telephony:
//   - enforcement.stop_command and start_command when configured: the
//     operator asked for them;
//   - else, when systemd runs the daemon, pbx-licence-stopped.target and
//     pbx-licence-active.target over D-Bus (the production path);
//   - else nil, the agent's default, which only logs (development, the
//     demo, tests).
//
// It returns the choice in words, for the start-up log.
func telephonyFor(cfg agent.Config, log *slog.Logger, getenv func(string) string) (agent.Telephony, string, error) {
	log = log.With("component", "telephony")
	e := cfg.Enforcement
	switch {
	case len(e.StopCommand) > 0:
		t, err := actions.NewCommandTelephony(e.StopCommand, e.StartCommand, e.CommandTimeout, log)
		if err != nil {
			return nil, "", fmt.Errorf("config enforcement.stop_command: %w", err)
		}
		return t, "commands " + e.StopCommand[0] + " and " + e.StartCommand[0], nil
	case underSystemd(getenv):
		// A list changed without running the helper stops the wrong units:
		// say so at every start until it is run.
		if err := actions.CheckDropIns(actions.UnitDir, e.StopUnits); err != nil {
			log.Warn("the telephony units are not attached as configured", "err", err)
		}
		return actions.NewSystemdTelephony(actions.DialSystemBus, log), "systemd: " + actions.StoppedTarget + " and " + actions.ActiveTarget, nil
	}
	return nil, "none: not run by systemd and no enforcement.stop_command; a stop is logged only", nil
}

// newTelephonyUnitsCmd is `pbx-agent helper telephony-units`, which the
// package scripts run as root after install and upgrade, and an admin
// after changing enforcement.stop_units.
func newTelephonyUnitsCmd(a *app) *cobra.Command {
	var root string
	var reload bool
	cmd := &cobra.Command{
		Use:   "telephony-units",
		Short: "Attach the telephony units of enforcement.stop_units to the licence targets (root)",
		Long: `Writes, from enforcement.stop_units, a drop-in that makes pbx-licence-stopped.target
stop those units (Conflicts=) and one that makes pbx-licence-active.target start
them (Wants=), under /etc/systemd/system, then reloads systemd if anything
changed. An empty list removes the drop-ins. Run it as root after changing the
list; the package scripts run it on install and upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			units := cfg.Enforcement.StopUnits
			changed, err := actions.WriteDropIns(root, units)
			if err != nil {
				return fmt.Errorf("telephony units: %w", err)
			}
			switch {
			case !changed:
				fmt.Fprintf(a.stdout, "telephony units %v: drop-ins unchanged\n", units)
				return nil
			case len(units) == 0:
				fmt.Fprintf(a.stdout, "telephony units: none; drop-ins removed\n")
			default:
				fmt.Fprintf(a.stdout, "telephony units %v: drop-ins written\n", units)
			}
			if !reload {
				return nil
			}
			if _, err := os.Stat("/run/systemd/system"); err != nil {
				return nil // not booted with systemd (a chroot, an image build)
			}
			if out, err := exec.CommandContext(cmd.Context(), "systemctl", "daemon-reload").CombinedOutput(); err != nil {
				return fmt.Errorf("systemctl daemon-reload: %v: %s", err, out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "unit-dir", actions.UnitDir, "unit `FOLDER` to write the drop-ins in")
	cmd.Flags().BoolVar(&reload, "reload", true, "run systemctl daemon-reload when something changed")
	return cmd
}
