// Command benchrig measures pbx-agent beside the programs users would
// compare it with, in one run on one machine, and prints one table of
// figures and ratios; `make bench` (scripts/bench.sh) runs it after the
// go test benchmarks, whose output it folds into the same table, and
// writes the table to docs/performance.md.
//
//	benchrig -bin bin [-gobench FILE] [-out docs/performance.md]
//
// It starts the portal simulator, activated agents, Debian's
// prometheus-node-exporter and mender-client as plain processes (no
// systemd needed), in a temporary folder, and stops them all at the end.
// Absolute figures on a shared machine do not hold; ratios to a baseline
// measured in the same run do, so every figure that has a counterpart is
// given beside it. No figure decides anything: the rig fails only when
// something could not be measured.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// options are the rig's flags.
type options struct {
	bin          string
	goBench      string
	out          string
	command      string
	nodeExporter string
	mender       string
	Idle         time.Duration // the footprint window
	Admission    time.Duration // each admission run's window
	Rounds       int           // admission runs of each kind, the best kept
	HBInterval   time.Duration
	HBWindow     time.Duration
	Startups     int
	Scrapes      int
	keep         bool
	started      int64   // when the whole command began, Unix seconds
	agentEnv     envList // extra environment of every agent, for experiments
}

// envList is a repeatable KEY=VALUE flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "bare-server" {
		if err := serveBare(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "benchrig bare-server:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "folder holding the built pbx-agent and pbx-portal-sim")
	flag.StringVar(&o.goBench, "gobench", "", "`FILE` of `go test -bench` output to fold into the table")
	flag.StringVar(&o.out, "out", "", "write the report (Markdown) to `FILE` as well")
	flag.StringVar(&o.command, "command", "make bench", "the command named in the report as the one that made it")
	flag.StringVar(&o.nodeExporter, "node-exporter", "/usr/bin/prometheus-node-exporter", "Debian's node_exporter")
	flag.StringVar(&o.mender, "mender", "/usr/bin/mender", "Debian's mender-client")
	flag.DurationVar(&o.Idle, "idle", 60*time.Second, "the footprint window")
	flag.DurationVar(&o.Admission, "admission", 1500*time.Millisecond, "the window of each admission run")
	flag.IntVar(&o.Rounds, "rounds", 3, "admission runs of each kind; the best is kept")
	flag.DurationVar(&o.HBInterval, "heartbeat-interval", 250*time.Millisecond, "heartbeat interval of the agent whose heartbeats are measured")
	flag.DurationVar(&o.HBWindow, "heartbeat-window", 10*time.Second, "how long heartbeats are measured")
	flag.IntVar(&o.Startups, "startups", 10, "how many starts are timed")
	flag.IntVar(&o.Scrapes, "scrapes", 50, "how many scrapes of each /metrics are timed")
	flag.Var(&o.agentEnv, "agent-env", "`KEY=VALUE` in the environment of every agent the rig starts (repeatable), e.g. GOGC=200 to see what it changes")
	flag.Int64Var(&o.started, "started", 0, "when the command that runs the rig began (Unix `SECONDS`), for the time the report gives")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder (logs, databases) for a look afterwards")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runRig(ctx, log, o); err != nil {
		log.Error("benchrig", "err", err)
		os.Exit(1)
	}
}
