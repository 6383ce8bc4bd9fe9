package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func newActivateCmd(a *app) *cobra.Command {
	var keyFile, licenceFile, out string
	var offline bool
	cmd := &cobra.Command{
		Use:   "activate",
		Short: "Activate this PBX with its key, through the running daemon",
		Long: "Reads the PBX key from standard input (or --key-file), never from the command line,\n" +
			"checks it against portal.keyring, then has the running daemon activate it with the portal.\n" +
			"Exits 2 for an invalid key (found here, or refused by the portal as expired, replaced or of a\n" +
			"deleted PBX), 3 when refused otherwise (the PBX is bound to another appliance, or this appliance\n" +
			"holds another PBX), 4 when the portal cannot be reached.\n\n" +
			"An air-gapped PBX, which never reaches its portal, is activated by files (docs/offline.md):\n" +
			"--offline writes the activation request to carry to the portal (to standard output, or --out;\n" +
			"it holds the key: keep it private; on a terminal it is also shown as a QR code of its short\n" +
			"form, which names the key without holding it), and --licence-file installs the licence file the portal\n" +
			"answers with, or a renewed one. A licence file that is not this appliance's, is older than the\n" +
			"one installed or answers nothing outstanding is refused with exit 2.",
		Example: "  pbx-agent activate < key.txt\n" +
			"  pbx-agent activate --offline --key-file key.txt --out request.txt\n" +
			"  pbx-agent activate --licence-file licence.txt",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case licenceFile != "" && (offline || keyFile != ""):
				return &codedError{code: exitError, err: errors.New("--licence-file installs a file the portal wrote: it takes no key (--offline, --key-file)")}
			case out != "" && !offline:
				return &codedError{code: exitError, err: errors.New("--out names where --offline writes the activation request: add --offline")}
			case licenceFile != "":
				return a.installLicenceFile(cmd.Context(), licenceFile)
			case offline:
				return a.offlineRequest(cmd.Context(), keyFile, out)
			}
			return a.activate(cmd.Context(), keyFile)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "read the key from `FILE` instead of standard input")
	cmd.Flags().BoolVar(&offline, "offline", false, "write an activation request to carry to the portal, for an air-gapped PBX")
	cmd.Flags().StringVar(&out, "out", "", "with --offline, write the request to `FILE` (mode 0600) instead of standard output")
	cmd.Flags().StringVar(&licenceFile, "licence-file", "", "install the offline licence `FILE` the portal wrote (- for standard input)")
	return cmd
}

func (a *app) activate(ctx context.Context, keyFile string) error {
	cfg, raw, v, err := a.pastedKey(keyFile)
	if err != nil {
		return err
	}
	// A key that cannot be valid is refused here, with the precise reason,
	// before the daemon and the portal hear of it.
	if _, err := v.parse(raw); err != nil {
		return &codedError{code: exitError, err: fmt.Errorf("%w: %w", apitype.ErrRefusedLocally, err)}
	}
	var st apitype.Status
	req := localapi.ActivateRequest{Key: license.NormalizeKey(raw)}
	if err := newAPIClient(cfg.Listen.Socket).do(ctx, "POST", "/v1/activate", req, &st); err != nil {
		return exitFor(err)
	}
	_, err = fmt.Fprintf(a.stdout, "Activated PBX %s: %s\n", pbxName(st.PBX), st.State)
	return err
}

// pbxName names a PBX for people: "acme.example (pbx-42)".
func pbxName(p *apitype.PBXStatus) string {
	switch {
	case p == nil:
		return "(none)"
	case p.Name == "":
		return p.ID
	}
	return fmt.Sprintf("%s (%s)", p.Name, p.ID)
}
