package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/pkg/identity"
)

// newCopySerialCmd is `pbx-agent helper copy-serial`, which pbx-agent's unit
// runs as root (ExecStartPre=+) before the unprivileged daemon starts: the
// kernel lets root alone read DMI's product_serial.
func newCopySerialCmd(a *app) *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "copy-serial",
		Short: "Copy the DMI serial number to the runtime folder for the daemon (run by pbx-agent.service)",
		Long: `Copies /sys/class/dmi/id/product_serial, which only root may read, to
<runtime_dir>/product_serial (mode 0644), where the unprivileged daemon reads
it for its status. Without a usable serial (absent, or a vendor placeholder
such as "To Be Filled By O.E.M.") the copy is removed. identity.serial, when
set, takes precedence over the copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			if root == "" {
				root = "/"
			}
			s, err := identity.CopySerial(root, filepath.Join(cfg.RuntimeDir, identity.SerialCopyName))
			if err != nil {
				return err
			}
			if s == "" {
				fmt.Fprintln(a.stdout, "no DMI serial number; set identity.serial")
				return nil
			}
			fmt.Fprintln(a.stdout, "serial number copied for the daemon")
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "", "read DMI under `FOLDER` instead of / (tests)")
	_ = cmd.Flags().MarkHidden("root")
	return cmd
}
