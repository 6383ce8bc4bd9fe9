// Command pbx-portal-sim is the reference portal: it issues PBX keys and,
// as it grows, licences under the portal's rules and commands, so that
// pbx-agent can be demonstrated and tested with no real portal.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "pbx-portal-sim",
		Short:         "Reference portal for pbx-agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newPBXCmd(stdout))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "pbx-portal-sim: %v\n", err)
		return 2
	}
	return 0
}
