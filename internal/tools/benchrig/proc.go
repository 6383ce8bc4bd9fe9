package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// usage is what the kernel says a process has used so far.
type usage struct {
	RSS int64 // VmRSS, bytes resident now
	HWM int64 // VmHWM, bytes resident at the peak since exec
	// Anon is RssAnon, the resident part of RSS that is the program's own
	// (heap, stacks); the rest is mostly its binary's pages, clean and
	// shared with the page cache, which the kernel may drop and read
	// again.
	Anon int64
	CPU  time.Duration // user + system time of all its threads
	// Sys is the system part of CPU, in stat's 10 ms ticks: coarse, for
	// telling the kernel's share over long spans.
	Sys time.Duration
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports (sysconf is out of reach without cgo).
const clockTick = 10 * time.Millisecond

// readUsage reads a process's memory and CPU time from /proc. CPU time
// comes from each thread's schedstat (nanoseconds) where the kernel keeps
// it, else from stat's utime and stime (10 ms ticks, too coarse for an
// idle daemon).
func readUsage(pid int) (usage, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return usage{}, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	u, err := parseStatus(status)
	if err != nil {
		return usage{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return usage{}, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	user, sys, err := parseStatCPU(stat)
	if err != nil {
		return usage{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	u.CPU, u.Sys = user+sys, sys
	if cpu, ok := schedCPU(dir); ok {
		u.CPU = cpu
	}
	return u, nil
}

// parseStatus takes VmRSS, VmHWM and RssAnon from /proc/PID/status.
func parseStatus(b []byte) (usage, error) {
	var u usage
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM" && key != "RssAnon") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return usage{}, fmt.Errorf("status line %q: want \"%s: N kB\"", sc.Text(), key)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("status line %q: %w", sc.Text(), err)
		}
		switch key {
		case "VmRSS":
			u.RSS = kb << 10
		case "VmHWM":
			u.HWM = kb << 10
		case "RssAnon":
			u.Anon = kb << 10
		}
		seen++
	}
	if seen != 3 {
		return usage{}, fmt.Errorf("status lacks VmRSS, VmHWM or RssAnon (a zombie or a kernel thread?)")
	}
	return u, nil
}

// parseStatCPU returns utime and stime (fields 14 and 15) of
// /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so fields
// are counted from its closing parenthesis.
func parseStatCPU(b []byte) (user, sys time.Duration, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat %q: no command name", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat %q: too few fields", b)
	}
	var ticks [2]int64
	for j, s := range f[11:13] {
		if ticks[j], err = strconv.ParseInt(s, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("stat %q: %w", b, err)
		}
	}
	return time.Duration(ticks[0]) * clockTick, time.Duration(ticks[1]) * clockTick, nil
}

// schedCPU adds the run time of every live thread of a process from
// /proc/PID/task/*/schedstat. A thread that exited is missing from the
// sum; Go programs keep their threads, and the figures are deltas over
// windows where none start or end.
func schedCPU(dir string) (time.Duration, bool) {
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		return 0, false
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, "task", t.Name(), "schedstat"))
		if err != nil {
			if os.IsNotExist(err) {
				continue // the thread ended meanwhile
			}
			return 0, false
		}
		ns, err := parseSchedstat(b)
		if err != nil {
			return 0, false
		}
		total += ns
	}
	return total, len(tasks) > 0
}

// parseSchedstat takes the first field of a schedstat: nanoseconds on CPU.
func parseSchedstat(b []byte) (time.Duration, error) {
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, fmt.Errorf("schedstat %q: empty", b)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat %q: %w", b, err)
	}
	return time.Duration(ns), nil
}

// memTotal returns MemTotal from /proc/meminfo, for the report's header.
func memTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemTotal")
}

// cpuModel returns the processor's name from /proc/cpuinfo, or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg returns the 1-minute load average from /proc/loadavg, or "".
// Other work on the machine shows in it; ratios to baselines measured
// alongside are what holds under such load.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}
