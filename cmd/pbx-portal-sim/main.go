// Command pbx-portal-sim is the reference portal: it serves the agent API
// (activation and heartbeats, signed with its own key) and an admin API,
// and its subcommands drive a running simulator: PBXs and their licences,
// its movable clock, and the faults it injects for reliability tests.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

// Defaults of the simulator's address.
const (
	defaultListen = "127.0.0.1:8780"
	defaultPortal = "http://" + defaultListen
	portalEnv     = "PBX_PORTAL_SIM_URL"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// env is what the commands take from the process, so tests can supply it.
type env struct {
	stdin          io.Reader // the tunnel's stdio relay, the offline files; nil reads nothing
	stdout, stderr io.Writer
	getenv         func(string) string
	// listen opens the serve command's listener; nil listens on TCP.
	listen func(addr string) (net.Listener, error)
	// now is the real clock the simulator's clock runs on; nil is time.Now.
	now func() time.Time
}

// exitError ends the CLI with its own code: 1 for a command the appliance
// refused or failed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// execute runs the CLI and returns the exit code: 0; 1 with one line on
// stderr for a command refused or failed by its appliance (--wait); 2 with
// one line on stderr for anything else that went wrong.
func execute(ctx context.Context, args []string, e *env) int {
	if e.getenv == nil {
		e.getenv = func(string) string { return "" }
	}
	if e.listen == nil {
		e.listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.stdin == nil {
		e.stdin = strings.NewReader("")
	}
	root := newRoot(e)
	root.SetArgs(commandArgs(root, args))
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	if err := root.ExecuteContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(e.stderr, "pbx-portal-sim: %v\n", err)
		if ee, ok := errors.AsType[*exitError](err); ok {
			return ee.code
		}
		return 2
	}
	return 0
}

// newRoot builds the command tree for the process's environment.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "pbx-portal-sim",
		Short: "Reference portal for pbx-agent",
		Long: "Reference portal for pbx-agent: `serve` runs it; the other commands drive a running\n" +
			"simulator through its admin API, which has NO authentication: it is a test tool,\n" +
			"to be served on loopback only.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	portal := e.getenv(portalEnv)
	if portal == "" {
		portal = defaultPortal
	}
	root.PersistentFlags().StringVar(&portal, "portal", portal, "`URL` of the running simulator (env "+portalEnv+")")
	client := func() *portalsim.Client { return portalsim.NewClient(portal) }
	root.AddCommand(newServeCmd(e), newPBXCmd(e, client), newClockCmd(e, client), newFaultCmd(e, client), newCommandCmd(e, client), newKeysCmd(e, client),
		newTunnelCmd(e, client))
	return root
}
