package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSlowTelephonyStopKeepsTheWatchdogFed runs the daemon as systemd
// would, with a 2 s watchdog, and a telephony stop command that takes 8 s:
// four watchdog periods. Throughout the stop, WATCHDOG=1 keeps coming
// within every period and the daemon stays the same process, so systemd
// would not kill it for a slow telephony unit.
func TestSlowTelephonyStopKeepsTheWatchdogFed(t *testing.T) {
	const (
		watchdog = 2 * time.Second
		stopTook = 8 * time.Second
	)
	sd := listenNotify(t, watchdog)
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	p.admin("clock", "set", "2027-03-10T10:00:00Z") // decreases are refused on a month's last day
	key := p.admin("pbx", "create", "--name", "slow.example", "--users", "uc-premium=10")
	a := newAppliance(t, "slow", p, "200ms")

	dir := t.TempDir()
	began, ended := filepath.Join(dir, "stop-began"), filepath.Join(dir, "stop-ended")
	script := filepath.Join(dir, "stop-telephony")
	body := fmt.Sprintf("#!/bin/sh\ntouch %s\nsleep %d\ntouch %s\n", began, int(stopTook.Seconds()), ended)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	a.appendConfig(fmt.Sprintf("enforcement:\n  stop_command: [%s]\n  start_command: [/bin/true]\n  command_timeout: 1m\n", script))
	a.start()
	pid := a.proc.cmd.Process.Pid
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	a.waitState("active", 5*time.Second)

	p.admin("pbx", "licenses", "slow.example", "uc-premium=0")
	a.waitState("stopping", 5*time.Second)
	p.admin("clock", "advance", "6d")
	a.waitState("stopped", 5*time.Second)
	eventually(t, 10*time.Second, "the stop command begun", func() (bool, string) {
		_, err := os.Stat(began)
		return err == nil, fmt.Sprint(err)
	})

	// Every WATCHDOG=1 since the daemon started, until one a period after
	// the stop ended; the gaps that end after the stop began are checked.
	var pings []time.Time
	giveUp := time.Now().Add(3 * stopTook)
	for {
		pings = append(pings, sd.await("WATCHDOG=1").at)
		if st, err := os.Stat(ended); err == nil && pings[len(pings)-1].Sub(st.ModTime()) > watchdog {
			break
		}
		if time.Now().After(giveUp) {
			t.Fatalf("the stop command did not end within %v", 3*stopTook)
		}
	}
	st, err := os.Stat(began)
	if err != nil {
		t.Fatal(err)
	}
	from := st.ModTime()
	var longest time.Duration
	last := from
	for i, at := range pings {
		if at.Before(from) {
			last = at
			continue
		}
		if i == 0 {
			last = from // no ping before the stop began: count from it
		}
		gap := at.Sub(last)
		longest = max(longest, gap)
		if gap >= watchdog {
			t.Errorf("no WATCHDOG=1 for %v from %s, during a slow telephony stop: over WATCHDOG_USEC %v",
				gap, last.Format("15:04:05.000"), watchdog)
		}
		last = at
	}
	t.Logf("longest gap between WATCHDOG=1 during an %v telephony stop: %v (watchdog %v; %d pings)", stopTook, longest.Round(time.Millisecond), watchdog, len(pings))

	select {
	case <-a.proc.done:
		t.Fatalf("the daemon exited during the stop:\n%s", a.proc.logs())
	default:
	}
	if got := a.proc.cmd.Process.Pid; got != pid {
		t.Errorf("PID %d, want %d", got, pid)
	}
	if s := a.status(); s.State != "stopped" {
		t.Errorf("after the stop: %s", s.State)
	}
	if logs := a.proc.logs(); !strings.Contains(logs, "telephony") || strings.Contains(logs, "not answered the watchdog") {
		t.Errorf("the log warns about the watchdog, or says nothing of telephony:\n%s", logs)
	}
}
