package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// users is the WMS database of the agents measured: 1,000 users.
var users = map[string]int{"uc-premium": 800, "pbx-basic": 200}

// licences are what their PBXs hold, room to spare for dry runs.
var licences = []string{"uc-premium=1000", "pbx-basic=500"}

// runRig runs every measurement and prints (and writes) the report.
func runRig(ctx context.Context, log *slog.Logger, o options) error {
	began, loadStart := time.Now(), loadAvg()
	if o.started > 0 {
		began = time.Unix(o.started, 0) // what ran before the rig counts too
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	for _, name := range []string{"pbx-agent", "pbx-portal-sim"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return fmt.Errorf("%s: build the binaries first (make build): %w", name, err)
		}
	}
	work, err := os.MkdirTemp("", "benchrig-")
	if err != nil {
		return err
	}
	r := &rig{bin: bin, work: work, env: o.agentEnv}
	if len(o.agentEnv) > 0 {
		log.Warn("agents run with an extra environment: the figures are an experiment's", "env", o.agentEnv.String())
	}
	defer func() {
		r.close()
		if o.keep {
			log.Info("work folder kept", "dir", work)
		} else {
			os.RemoveAll(work)
		}
	}()
	var benches []goBench
	if o.goBench != "" {
		f, err := os.Open(o.goBench)
		if err != nil {
			return err
		}
		benches, err = parseGoBench(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", o.goBench, err)
		}
	}
	if err := r.startPortal(ctx); err != nil {
		return err
	}
	rows := map[string][]row{}

	// 1. Footprint: the three programs idle in the same window.
	log.Info("1. footprint: pbx-agent, node_exporter and mender-client idle together", "window", o.Idle)
	main, err := r.newAgent("agent", 60*time.Second, users)
	if err != nil {
		return err
	}
	if err := r.start(ctx, main); err != nil {
		return err
	}
	if err := r.activate(ctx, main, licences...); err != nil {
		return err
	}
	progs := []*peer{{name: "pbx-agent", d: main.d, bin: r.agentBin(), metrics: "http://" + main.http + "/metrics"}}
	var nodeExporter *peer
	missing := map[string]string{}
	if _, err := os.Stat(o.nodeExporter); err == nil {
		if nodeExporter, err = r.startNodeExporter(o.nodeExporter); err != nil {
			return err
		}
		progs = append(progs, nodeExporter)
	} else {
		missing["node_exporter"] = o.nodeExporter
	}
	var mender *peer
	if _, err := os.Stat(o.mender); err == nil {
		if mender, err = r.startMender(o.mender); err != nil {
			return err
		}
		progs = append(progs, mender)
	} else {
		missing["mender-client"] = o.mender
	}
	for name, path := range missing {
		log.Warn("not installed: its figures are left out (scripts/bench.sh installs it)", "program", name, "path", path)
	}
	// Let start-up work (Mender makes its device key) end before the window.
	if err := waitUntil(ctx, time.Now().Add(3*time.Second)); err != nil {
		return err
	}
	sc := newScraper()
	fps, err := measureIdle(ctx, o.Idle, func(url string) error {
		_, _, err := sc.scrape(ctx, url)
		return err
	}, progs)
	if err != nil {
		return err
	}
	rows["1"] = footprintRows(fps, o.Idle)
	if mender != nil {
		mender.d.stop()
	}

	// 2. Admission over the agent's socket against a bare handler.
	log.Info("2. admission: 1, 16 and 256 clients, keep-alive and a connection per request")
	bareD, bare, err := r.startBare(ctx)
	if err != nil {
		return err
	}
	var cpu [][2]load // the agent's run and the bare handler's, for CPU per decision
	for _, keepAlive := range []bool{true, false} {
		for _, clients := range []int{1, 16, 256} {
			// Alternate rounds, so that both see the same machine, and keep
			// each one's best: on a shared machine the least disturbed.
			var limit, got load
			for i := range o.Rounds {
				l := runLoad(ctx, bareD.pid(), bare, clients, keepAlive, 300*time.Millisecond, o.Admission)
				g := runLoad(ctx, main.d.pid(), main.socket, clients, keepAlive, 300*time.Millisecond, o.Admission)
				if i == 0 || l.decisions > limit.decisions {
					limit = l
				}
				if i == 0 || g.decisions > got.decisions {
					got = g
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if got.decisions == 0 {
				return fmt.Errorf("admission, %d clients: no decision (%v); agent log: %s", clients, got.firstErr, main.d.log)
			}
			rows["2"] = append(rows["2"], admissionRow(got, limit))
			cpu = append(cpu, [2]load{got, limit})
		}
	}
	rows["2"] = append(rows["2"], cpuRows(cpu)...)
	rows["2"] = append(rows["2"], goBenchRows("2", benches, []benchLabel{
		{"BenchmarkAdmissionInProcess", "admit", "in process, one goroutine: Agent.Admit (go test)", "admission.Decide alone"},
		{"BenchmarkAdmissionInProcess", "admit-parallel", "in process, all cores: Agent.Admit (go test)", "admission.Decide alone"},
		{"BenchmarkAdmissionSocket", "admission", "one keep-alive client, in one process (go test)", "bare handler, same"},
		{"BenchmarkAdmissionSocketNewConn", "admission", "one client, a connection per request, in one process (go test)", "bare handler, same"},
	})...)

	// 3. Verification.
	rows["3"] = goBenchRows("3", benches, []benchLabel{
		{"BenchmarkVerify", "ParseKey", "verify a PBX key (all checks)", "ed25519.Verify of its bytes"},
		{"BenchmarkVerify", "ParseDocument", "verify a licence document (all checks)", "ed25519.Verify of its bytes"},
	})

	// 8. Scrape, while node_exporter runs.
	if nodeExporter != nil {
		log.Info("8. scrape: /metrics of pbx-agent and node_exporter, alternately", "scrapes", o.Scrapes)
		a, b, err := compareScrapes(ctx, o.Scrapes, progs[0].metrics, nodeExporter.metrics)
		if err != nil {
			return err
		}
		rows["8"] = scrapeRows(a, b)
		nodeExporter.d.stop()
	}

	// 5. Heartbeat cost, on an agent of its own with a short interval.
	log.Info("5. heartbeat cost", "interval", o.HBInterval, "window", o.HBWindow)
	idleRate := float64(fps[0].cpu()) / fps[0].window.Seconds() // ns of CPU per second idle
	hb, err := r.heartbeatCost(ctx, o.HBInterval, o.HBWindow, idleRate)
	if err != nil {
		return err
	}
	rows["5"] = hb.rows()

	// 4. Start-up, with the activated state of the first agent.
	log.Info("4. start-up: exec to READY=1", "starts", o.Startups)
	main.d.stop()
	ready, err := r.startups(ctx, main, o.Startups)
	if err != nil {
		return err
	}
	floor, err := execToExit(ctx, o.Startups, r.agentBin(), "version")
	if err != nil {
		return err
	}
	rows["4"] = startupRows(ready, floor)

	// 6. Counting users.
	rows["6"] = goBenchRows("6", benches, []benchLabel{
		{"BenchmarkSQLiteCount100k", "count", "count 100,000 users from SQLite", "bare SELECT COUNT(*), same table"},
		{"BenchmarkSQLiteCount100kIndexed", "index-on-profile", "the same count, the WMS's table indexed on profile", "the count without the index"},
	})

	// 7. Command delivery.
	rows["7"], err = r.commandDelivery(ctx)
	if err != nil {
		return err
	}

	// 9. Support SSH through the tunnel.
	log.Info("9. support SSH through the portal's tunnel against sshd directly", "rounds", o.Rounds)
	rows["9"], err = r.tunnelCost(ctx, o.Rounds)
	if err != nil {
		return err
	}

	var all []row
	for _, item := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"} {
		all = append(all, rows[item]...)
	}
	all = append(all, otherGoBenchRows(benches)...)
	rep := report{Meta: machine(o, bin, loadStart), Table: table(all), Rows: all, Took: time.Since(began).Round(time.Second),
		Missing: missing, Footprint: fps, Heartbeat: hb, opts: o}
	fmt.Print(rep.text())
	if o.out != "" {
		if err := rep.write(o.out); err != nil {
			return err
		}
		log.Info("report written", "file", o.out)
	}
	return nil
}

// footprintRows compares pbx-agent (first) with each other program.
func footprintRows(fps []footprint, window time.Duration) []row {
	var rows []row
	agent := fps[0]
	w := fmt.Sprintf("%.0f s", window.Seconds())
	order := map[string]int{}
	for _, other := range fps[1:] {
		add := func(what, a, b string, av, bv float64) {
			ratio, reads := costRatio(av, bv)
			if _, ok := order[what]; !ok {
				order[what] = len(order)
			}
			against := other.name
			if other.note != "" {
				against += " (" + other.note + ")"
			}
			rows = append(rows, row{Item: "1", What: what, Agent: a, Against: against, Other: b, Ratio: ratio, Reads: reads})
		}
		add("resident memory after "+w+" idle (VmRSS)", fmtBytes(agent.end.RSS), fmtBytes(other.end.RSS), float64(agent.end.RSS), float64(other.end.RSS))
		add("of which its own: heap, stacks (RssAnon)", fmtBytes(agent.end.Anon), fmtBytes(other.end.Anon), float64(agent.end.Anon), float64(other.end.Anon))
		add("peak resident memory since exec (VmHWM)", fmtBytes(agent.end.HWM), fmtBytes(other.end.HWM), float64(agent.end.HWM), float64(other.end.HWM))
		add("CPU time in the "+w+" window", fmtDur(agent.cpu()), fmtDur(other.cpu()), float64(agent.cpu()), float64(other.cpu()))
		add("binary size", fmtBytes(agent.binSize), fmtBytes(other.binSize), float64(agent.binSize), float64(other.binSize))
	}
	// One figure after another, each against every program.
	slices.SortStableFunc(rows, func(a, b row) int { return order[a.What] - order[b.What] })
	return rows
}

// admissionRow compares one admission run with the bare handler's.
func admissionRow(got, limit load) row {
	mode := "keep-alive"
	if !got.keepAlive {
		mode = "new connection per request"
	}
	ratio, reads := rateRatio(got.perSecond(), limit.perSecond())
	if got.starved > limit.starved {
		reads = "**behind**: leaves clients unanswered"
	}
	return row{Item: "2", What: fmt.Sprintf("admission, %d client%s, %s: decisions/s · p50 · p99", got.clients, plural(got.clients), mode),
		Agent: loadCell(got), Against: "bare net/http handler, same socket kind", Other: loadCell(limit), Ratio: ratio, Reads: reads}
}

// cpuRows gives the server's CPU time per decision, summed over the runs
// of each connection mode.
func cpuRows(runs [][2]load) []row {
	var rows []row
	for _, keepAlive := range []bool{true, false} {
		var agent, bare [2]int64 // CPU ns, decisions
		for _, r := range runs {
			if r[0].keepAlive != keepAlive {
				continue
			}
			agent[0] += int64(r[0].serverCPU)
			agent[1] += int64(r[0].answered)
			bare[0] += int64(r[1].serverCPU)
			bare[1] += int64(r[1].answered)
		}
		if agent[1] == 0 || bare[1] == 0 {
			continue
		}
		a, b := float64(agent[0])/float64(agent[1]), float64(bare[0])/float64(bare[1])
		mode := "keep-alive"
		if !keepAlive {
			mode = "new connection per request"
		}
		ratio, reads := costRatio(a, b)
		rows = append(rows, row{Item: "2", What: "server CPU time per decision, " + mode + " (all runs)",
			Agent: fmtNs(a), Against: "bare net/http handler, same socket kind", Other: fmtNs(b), Ratio: ratio, Reads: reads})
	}
	return rows
}

func loadCell(l load) string {
	p50, b50 := l.percentile(0.50)
	p99, b99 := l.percentile(0.99)
	s := fmt.Sprintf("%s · %s · %s", fmtRate(l.perSecond(), "/s"), fmtBound(p50, b50), fmtBound(p99, b99))
	if l.starved > 0 {
		s += fmt.Sprintf(" (%d clients unanswered in the window)", l.starved)
	}
	if l.failures > 0 {
		s += fmt.Sprintf(" (%d failed: %v)", l.failures, l.firstErr)
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// startupRows gives the median and the worst start against the floor.
func startupRows(ready, floor []time.Duration) []row {
	rm, fm := median(ready), median(floor)
	ratio, reads := costRatio(float64(rm), float64(fm))
	return []row{{Item: "4", What: fmt.Sprintf("exec to READY=1, activated (median of %d · worst)", len(ready)),
		Agent: fmtDur(rm) + " · " + fmtDur(slices.Max(ready)), Against: "`pbx-agent version`, exec to exit",
		Other: fmtDur(fm) + " · " + fmtDur(slices.Max(floor)), Ratio: ratio, Reads: reads}}
}

func median(d []time.Duration) time.Duration {
	v, _ := percentile(d, nil, 0.5)
	return v
}

// scrapeRows compares pbx-agent's /metrics with node_exporter's.
func scrapeRows(a, b scrapeStats) []row {
	ap50, _ := percentile(a.lat, nil, 0.5)
	ap99, _ := percentile(a.lat, nil, 0.99)
	bp50, _ := percentile(b.lat, nil, 0.5)
	bp99, _ := percentile(b.lat, nil, 0.99)
	lr, lreads := costRatio(float64(ap50), float64(bp50))
	sr, sreads := costRatio(float64(a.wire), float64(b.wire))
	return []row{
		{Item: "8", What: fmt.Sprintf("GET /metrics latency, p50 · p99 (%d scrapes)", len(a.lat)),
			Agent: fmtDur(ap50) + " · " + fmtDur(ap99), Against: "node_exporter", Other: fmtDur(bp50) + " · " + fmtDur(bp99), Ratio: lr, Reads: lreads},
		{Item: "8", What: "GET /metrics size: gzip on the wire · text · samples",
			Agent: fmt.Sprintf("%s · %s · %d", fmtBytes(int64(a.wire)), fmtBytes(int64(a.text)), a.samples), Against: "node_exporter",
			Other: fmt.Sprintf("%s · %s · %d", fmtBytes(int64(b.wire)), fmtBytes(int64(b.text)), b.samples), Ratio: sr, Reads: sreads},
	}
}

// benchLabel names a go test benchmark in the table.
type benchLabel struct{ group, sub, what, against string }

// goBenchRows turns go test benchmarks into rows against their baseline.
func goBenchRows(item string, all []goBench, labels []benchLabel) []row {
	var rows []row
	for _, l := range labels {
		b, ok := findBench(all, l.group, l.sub)
		base, bok := baselineOf(all, l.group)
		if !ok || !bok {
			rows = append(rows, row{Item: item, What: l.what, Agent: "not run (go test -bench " + l.group + ")", Against: l.against})
			continue
		}
		ratio, reads := costRatio(b.Metrics["ns/op"], base.Metrics["ns/op"])
		rows = append(rows, row{Item: item, What: l.what, Agent: benchCell(b), Against: l.against, Other: benchCell(base), Ratio: ratio, Reads: reads})
	}
	return rows
}

// known are the benchmarks the table already shows under their number.
var known = map[string]bool{"BenchmarkAdmissionInProcess": true, "BenchmarkAdmissionSocket": true, "BenchmarkAdmissionSocketNewConn": true,
	"BenchmarkVerify": true, "BenchmarkSQLiteCount100k": true, "BenchmarkSQLiteCount100kIndexed": true}

// otherGoBenchRows shows every other benchmark that has a baseline, so a
// new one appears in the table without changing the rig.
func otherGoBenchRows(all []goBench) []row {
	var rows []row
	for _, b := range all {
		if known[b.Group] || strings.HasPrefix(b.Sub, "baseline=") {
			continue
		}
		base, ok := baselineOf(all, b.Group)
		if !ok {
			continue
		}
		ratio, reads := costRatio(b.Metrics["ns/op"], base.Metrics["ns/op"])
		rows = append(rows, row{Item: "+", What: b.Group + "/" + b.Sub + " (go test)", Agent: benchCell(b),
			Against: strings.TrimPrefix(base.Sub, "baseline="), Other: benchCell(base), Ratio: ratio, Reads: reads})
	}
	return rows
}

func benchCell(b goBench) string {
	s := fmtNs(b.Metrics["ns/op"])
	if per, ok := b.Metrics["decisions/s"]; ok {
		s = fmtRate(per, "/s") + " · " + s
	}
	if allocs, ok := b.Metrics["allocs/op"]; ok {
		s += fmt.Sprintf(" · %.0f allocs", allocs)
	}
	return s
}
