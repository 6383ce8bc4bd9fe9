package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	in := "Name:\tpbx-agent\nVmPeak:\t 1000 kB\nVmHWM:\t   25600 kB\nVmRSS:\t   20480 kB\nRssAnon:\t    4096 kB\nRssFile:\t   16384 kB\nThreads:\t7\n"
	u, err := parseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS != 20480<<10 || u.HWM != 25600<<10 || u.Anon != 4096<<10 {
		t.Errorf("RSS %d, HWM %d, anon %d; want %d, %d, %d", u.RSS, u.HWM, u.Anon, 20480<<10, 25600<<10, 4096<<10)
	}
	for name, bad := range map[string]string{
		"zombie":   "Name:\tx\nState:\tZ (zombie)\n",
		"unit":     "VmHWM:\t1 MB\nVmRSS:\t1 kB\nRssAnon:\t1 kB\n",
		"not int":  "VmHWM:\tx kB\nVmRSS:\t1 kB\nRssAnon:\t1 kB\n",
		"only one": "VmRSS:\t1 kB\n",
	} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("%s: parsed %q", name, bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis must not shift fields.
	in := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 7 0 123 456 789\n"
	user, sys, err := parseStatCPU([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if user != 250*clockTick || sys != 37*clockTick {
		t.Errorf("user %v, system %v; want utime 250 and stime 37 ticks", user, sys)
	}
	if _, _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("a truncated stat parsed")
	}
}

func TestParseSchedstat(t *testing.T) {
	d, err := parseSchedstat([]byte("123456789 222 3\n"))
	if err != nil || d != 123456789*time.Nanosecond {
		t.Errorf("got %v, %v", d, err)
	}
	if _, err := parseSchedstat([]byte("\n")); err == nil {
		t.Error("an empty schedstat parsed")
	}
}

// TestReadUsageSelf reads this test's own process: CPU time grows with
// work done, and memory is there.
func TestReadUsageSelf(t *testing.T) {
	before, err := readUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.RSS <= 0 || before.HWM < before.RSS || before.Anon <= 0 || before.Anon > before.RSS {
		t.Errorf("RSS %d, HWM %d, anon %d", before.RSS, before.HWM, before.Anon)
	}
	// Spin until the kernel has counted at least 20 ms more CPU time.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		after, err := readUsage(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after.CPU-before.CPU >= 20*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v after 10 s of work", after.CPU)
		}
	}
	_ = x
}
