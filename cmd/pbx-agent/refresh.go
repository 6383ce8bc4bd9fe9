package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func newRefreshCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "refresh",
		Short: "Run a heartbeat with the portal now",
		Long:  "Has the running daemon talk to the portal now and prints the resulting state.\nExits 4 when the portal cannot be reached.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.refresh(cmd.Context())
		},
	}
}

func (a *app) refresh(ctx context.Context) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	var st apitype.Status
	err = c.do(ctx, "POST", "/v1/refresh", nil, &st)
	var de *daemonError
	if errors.As(err, &de) && de.body.Code == apitype.CodePortalUnreachable {
		// Say where the PBX stands all the same: offline is not lapsed.
		if c.do(ctx, "GET", "/v1/status", nil, &st) == nil {
			fmt.Fprintln(a.stdout, stateLine(st))
		}
	}
	if err != nil {
		return exitFor(err)
	}
	_, err = fmt.Fprintln(a.stdout, stateLine(st))
	return err
}

// stateLine is the state and its summary on one line.
func stateLine(st apitype.Status) string {
	if st.Summary == "" {
		return "State: " + st.State
	}
	return "State: " + st.State + ": " + st.Summary
}
