package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func newReportCmd(a *app) *cobra.Command {
	var out string
	var offline bool
	cmd := &cobra.Command{
		Use:   "report --offline",
		Short: "Write the usage report an air-gapped PBX carries to its portal for renewal",
		Long: "Has the running daemon write a usage report signed with this appliance's device key: the users\n" +
			"counted now, the peak since the last licence file installed, and the link to that file. Carry\n" +
			"it to the portal, which answers with a renewed licence file (pbx-agent activate --licence-file).\n" +
			"Until a file answering it is installed, the same report is written again, so a report lost on\n" +
			"the way is simply carried again. On a terminal the report is also shown as a QR code of its\n" +
			"short form, for a phone to carry. A PBX in touch with its portal reports with every heartbeat.",
		Example: "  pbx-agent report --offline --out report.txt",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !offline {
				return &codedError{code: exitError, err: errors.New("report writes the usage report of an air-gapped PBX: add --offline (online, usage goes with every heartbeat)")}
			}
			return a.offlineReport(cmd.Context(), out)
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "write the usage report to carry to the portal")
	cmd.Flags().StringVar(&out, "out", "", "write the report to `FILE` instead of standard output")
	return cmd
}

func (a *app) offlineReport(ctx context.Context, out string) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	var f apitype.OfflineFile
	if err := c.do(ctx, "POST", "/v1/offline/report", nil, &f); err != nil {
		return exitFor(err)
	}
	a.showQR(f.Short, reportQRNote)
	if err := a.writeCarried(out, f.File); err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, carryNote("usage report", "the same report as before: no licence file was installed since", out, f.Again))
	return nil
}
