package main

import (
	"fmt"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func TestRefresh(t *testing.T) {
	fb, sock := daemon(t)
	tests := []struct {
		name       string
		refreshErr error
		socket     string
		wantCode   int
		wantStdout string
		wantStderr string
		wantCalls  int
	}{
		{name: "ok", wantStdout: "State: active: Licensed and in touch with the portal.\n", wantCalls: 1},
		{name: "portal unreachable", refreshErr: fmt.Errorf("%w: dial tcp: i/o timeout", apitype.ErrUnreachable),
			wantCode: 4, wantStdout: "State: active", wantStderr: "pbx-agent: portal unreachable: dial tcp: i/o timeout\n", wantCalls: 1},
		{name: "refused", refreshErr: fmt.Errorf("%w: licence suspended", apitype.ErrRefused),
			wantCode: 3, wantStderr: "licence suspended", wantCalls: 1},
		{name: "not activated", refreshErr: apitype.ErrNotActivated, wantCode: 2, wantStderr: "pbx-agent: not activated: activate a PBX key first", wantCalls: 1},
		{name: "daemon not running", socket: "/nonexistent/agent.sock", wantCode: 2, wantStderr: "is the daemon running?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb.SetRefreshErr(tt.refreshErr)
			fb.ClearCalls()
			socket := sock
			if tt.socket != "" {
				socket = tt.socket
			}
			r := run(t, "", "--socket", socket, "refresh")
			wantResult(t, r, tt.wantCode, tt.wantStdout, tt.wantStderr)
			if n := fb.Refreshes(); n != tt.wantCalls {
				t.Errorf("the daemon saw %d refreshes, want %d", n, tt.wantCalls)
			}
		})
	}
}
