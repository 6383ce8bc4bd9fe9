//go:build !pbxtestclock

package main

import (
	"log/slog"
	"os/exec"
	"strings"
	"testing"
)

// TestShippedBuildHasNoTestClock: the clock offsets tests use are in a
// file only a pbxtestclock build compiles, and the daemon of the shipped
// build reads the machine's clocks whatever its environment says.
func TestShippedBuildHasNoTestClock(t *testing.T) {
	files := func(tags ...string) string {
		args := append([]string{"list"}, tags...)
		out, err := exec.Command("go", append(args, "-f", "{{.GoFiles}}", ".")...).Output()
		if err != nil {
			t.Fatalf("go list %v: %v", tags, err)
		}
		return string(out)
	}
	if got := files(); strings.Contains(got, "testclock_pbxtestclock.go") || !strings.Contains(got, "testclock.go") {
		t.Errorf("the shipped build compiles %s", got)
	}
	if got := files("-tags", "pbxtestclock"); !strings.Contains(got, "testclock_pbxtestclock.go") {
		t.Errorf("the test build does not compile its clock: %s", got)
	}
	env := func(string) string { return "/tmp/offsets" } // every variable set
	if src, err := testTimeSource(env, slog.New(slog.DiscardHandler)); src != nil || err != nil {
		t.Errorf("the shipped build took a test clock from its environment: %v, %v", src, err)
	}
}
