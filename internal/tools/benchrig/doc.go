package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/template"
	"time"
)

// meta is where and how the figures were made.
type meta struct {
	Date, Command               string
	CPUs                        int
	Memory, CPUModel, Kernel    string
	Agent, NodeExporter, Mender string // versions
	Rig                         string // the rig's Go, for the bare handler
	LoadStart, LoadEnd          string // 1-minute load averages
}

func machine(o options, bin, loadStart string) meta {
	m := meta{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Command: o.command, CPUs: runtime.NumCPU(),
		CPUModel: cpuModel(), Rig: runtime.Version(), LoadStart: loadStart, LoadEnd: loadAvg()}
	if n, err := memTotal(); err == nil {
		m.Memory = fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(bin+"/pbx-agent", "version").Output(); err == nil {
		m.Agent = strings.TrimSpace(string(out))
	}
	m.NodeExporter = debVersion("prometheus-node-exporter")
	m.Mender = debVersion("mender-client")
	return m
}

// debVersion is the installed version of a Debian package, or "".
func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// report is everything the rig prints and writes.
type report struct {
	Meta      meta
	Table     string
	Rows      []row
	Took      time.Duration
	Missing   map[string]string
	Footprint []footprint
	Heartbeat heartbeatResult
	opts      options
}

// text is what the rig prints: where, when, and the table.
func (r report) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s · %d cores · %s · %s · load average %s at the start, %s at the end\n",
		r.Meta.Date, r.Meta.CPUs, r.Meta.Memory, r.Meta.CPUModel, r.Meta.LoadStart, r.Meta.LoadEnd)
	fmt.Fprintf(&b, "%s · node_exporter %s · mender-client %s · `%s` took %v\n\n", r.Meta.Agent, orNone(r.Meta.NodeExporter), orNone(r.Meta.Mender), r.Meta.Command, r.Took)
	b.WriteString(r.Table)
	return b.String()
}

// why is the reason a row gives for reading behind, if any: the part of
// "**behind**: leaves clients unanswered" after the verdict.
func why(reads string) string {
	_, reason, _ := strings.Cut(reads, ": ")
	return reason
}

// fmtSpan writes a configured span the way a reader says it: 60 s, 250 ms.
func fmtSpan(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return fmt.Sprintf("%d s", d/time.Second)
	}
	if d >= time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d/time.Millisecond)
}

func orNone(s string) string {
	if s == "" {
		return "(not installed)"
	}
	return s
}

// Behind lists the rows where pbx-agent is behind, for the closing note.
func (r report) Behind() []row {
	var out []row
	for _, x := range r.Rows {
		if strings.Contains(x.Reads, "behind") {
			out = append(out, x)
		}
	}
	return out
}

// Find returns the first row whose figure and comparison contain what
// and against, for the prose of the report to quote; a zero row if none.
func (r report) Find(what, against string) row {
	for _, x := range r.Rows {
		if strings.Contains(x.What, what) && strings.Contains(x.Against, against) {
			return x
		}
	}
	return row{Agent: "(not measured)", Other: "(not measured)"}
}

// MemSplit says how much of pbx-agent's extra resident memory against
// node_exporter is its binary's pages and how much its own.
func (r report) MemSplit() string {
	var a, n *footprint
	for i := range r.Footprint {
		switch r.Footprint[i].name {
		case "pbx-agent":
			a = &r.Footprint[i]
		case "node_exporter":
			n = &r.Footprint[i]
		}
	}
	if a == nil || n == nil {
		return "node_exporter was not measured."
	}
	rss, anon := a.end.RSS-n.end.RSS, a.end.Anon-n.end.Anon
	if rss <= 0 {
		return fmt.Sprintf("In this run pbx-agent held no more resident memory than node_exporter (%s against %s).", fmtBytes(a.end.RSS), fmtBytes(n.end.RSS))
	}
	return fmt.Sprintf("Of the %s more that pbx-agent holds resident, %s is its binary's pages and %s its own memory (RssAnon %s against %s).",
		fmtBytes(rss), fmtBytes(rss-anon), fmtSigned(anon), fmtBytes(a.end.Anon), fmtBytes(n.end.Anon))
}

func fmtSigned(n int64) string {
	if n < 0 {
		return "−" + fmtBytes(-n)
	}
	return fmtBytes(n)
}

// Options are the rig's settings, for the report to say how it measured.
func (r report) Options() options { return r.opts }

//go:embed performance.md.tmpl
var docTemplate string

// write renders docs/performance.md.
func (r report) write(path string) error {
	t, err := template.New("performance.md").Funcs(template.FuncMap{"orNone": orNone, "dur": fmtSpan, "why": why}).Parse(docTemplate)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, r); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
