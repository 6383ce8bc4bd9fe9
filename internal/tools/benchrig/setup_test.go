package main

import (
	"context"
	"testing"
)

// The rig waits for a daemon that answers its status in any state:
// status exits with the state's code, 2 only when it could not ask.
func TestStateExit(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   bool
	}{
		{"exit 0", true}, {"exit 10", true}, {"exit 13", true}, {"exit 19", true},
		{"exit 1", false}, {"exit 2", false}, {"exit 4", false}, {"exit 20", false},
	} {
		_, err := run(context.Background(), "", "sh", "-c", tc.script)
		if got := stateExit(err); got != tc.want {
			t.Errorf("stateExit after %q = %v, want %v", tc.script, got, tc.want)
		}
	}
	if _, err := run(context.Background(), "", "/nonexistent/pbx-agent"); stateExit(err) {
		t.Error("a CLI that did not run counts as an answer")
	}
}
