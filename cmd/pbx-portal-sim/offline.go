package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
)

// newPBXOfflineCmds are the two steps of an air-gapped PBX's file
// exchange: a request or report in on stdin, a licence file out on stdout.
func newPBXOfflineCmds(e *env, client clientFunc) []*cobra.Command {
	activate := &cobra.Command{
		Use:   "offline-activate NAME < REQUEST",
		Short: "Answer an air-gapped PBX's activation request with a licence file",
		Long: "Read the activation request an air-gapped PBX wrote (pbx-agent activate --offline),\n" +
			"armoured or bare, or the short form its QR code carries (PBX-ACTIVATE:...), on\n" +
			"standard input; bind the PBX to that appliance as an online\n" +
			"activation does; and print the offline licence file to carry back on standard\n" +
			"output (install it with pbx-agent activate --licence-file FILE). The file holds\n" +
			"until its horizon, the PBX's offline grace from now (pbx licenses --offline-grace).\n" +
			"The same request again gets the same file.",
		Example: "  pbx-portal-sim pbx offline-activate acme.example < request.txt > licence.txt\n" +
			"  echo 'PBX-ACTIVATE:AEAAAAA...' | pbx-portal-sim pbx offline-activate acme.example > licence.txt",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return offlineExchange(cmd.Context(), e, "request", func(ctx context.Context, in string) (*portalsim.OfflineLicence, error) {
				return client().OfflineActivate(ctx, args[0], in)
			})
		},
	}
	renew := &cobra.Command{
		Use:   "offline-renew NAME < REPORT",
		Short: "Answer an air-gapped PBX's usage report with a renewed licence file",
		Long: "Read the usage report an air-gapped PBX wrote (pbx-agent report --offline), the file\n" +
			"or the short form its QR code carries (PBX-REPORT:...), on standard input, record its\n" +
			"usage, and print the renewed licence file on standard output. The\n" +
			"report must continue the PBX's chain: one linking to a file the portal never issued\n" +
			"is refused, naming the link; one from a state older than the last file is recorded\n" +
			"as a fork (shown by pbx show). The same report again gets the same file.",
		Example: "  pbx-portal-sim pbx offline-renew acme.example < report.txt > licence.txt",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return offlineExchange(cmd.Context(), e, "report", func(ctx context.Context, in string) (*portalsim.OfflineLicence, error) {
				return client().OfflineRenew(ctx, args[0], in)
			})
		},
	}
	return []*cobra.Command{activate, renew}
}

// offlineExchange reads what stdin carries, has the portal answer it and
// prints the licence file alone on stdout; notes go to stderr.
func offlineExchange(ctx context.Context, e *env, what string, send func(context.Context, string) (*portalsim.OfflineLicence, error)) error {
	b, err := io.ReadAll(io.LimitReader(e.stdin, offline.MaxFileSize+1))
	switch {
	case err != nil:
		return fmt.Errorf("reading the %s on standard input: %w", what, err)
	case len(b) > offline.MaxFileSize:
		return fmt.Errorf("the %s on standard input exceeds %d bytes: is it the right file?", what, offline.MaxFileSize)
	case strings.TrimSpace(string(b)) == "":
		return errors.New("no " + what + " on standard input: redirect the file the PBX wrote (< FILE)")
	}
	out, err := send(ctx, string(b))
	if err != nil {
		return err
	}
	if out.Replayed {
		fmt.Fprintf(e.stderr, "pbx-portal-sim: this %s was answered before: the same licence file again\n", what)
	}
	if out.Reanchored {
		fmt.Fprintf(e.stderr, "pbx-portal-sim: warning: the report comes from a state older than the last file issued (restored or rolled back); the fork is recorded\n")
	}
	fmt.Fprintf(e.stderr, "pbx-portal-sim: %s: revision %d, valid until %s\n", out.PBX.Name, out.Revision, out.Horizon.UTC().Format(time.RFC3339))
	_, err = io.WriteString(e.stdout, out.File)
	return err
}
