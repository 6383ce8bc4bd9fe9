package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// row is one line of the table: a figure of pbx-agent, and the figure it
// is compared with, measured in the same run.
type row struct {
	Item    string // the number of the figure in docs/performance.md
	What    string
	Agent   string
	Against string // what it is compared with; "" when nothing is
	Other   string
	Ratio   string
	Reads   string // behind, ahead or level, for pbx-agent
}

// tolerance is how far a ratio may stray from 1 and still read "level":
// two runs on a shared machine differ by about this much.
const tolerance = 0.10

// costRatio compares costs (lower is better): agent over other.
func costRatio(agent, other float64) (string, string) {
	switch {
	case math.IsNaN(agent) || other < 0:
		return "", ""
	case other == 0 && agent > 0: // the other spent nothing measurable
		return "∞", "**behind**"
	case other == 0:
		return "", "level"
	}
	r := agent / other
	return fmtRatio(r), reads(r, true)
}

// rateRatio compares rates (higher is better): agent over other, the
// share of the other's rate that pbx-agent reaches.
func rateRatio(agent, other float64) (string, string) {
	if other <= 0 {
		return "", ""
	}
	r := agent / other
	return fmtRatio(r), reads(r, false)
}

func reads(r float64, lowerIsBetter bool) string {
	switch {
	case math.Abs(r-1) <= tolerance:
		return "level"
	case (r > 1) == lowerIsBetter:
		return "**behind**"
	default:
		return "ahead"
	}
}

func fmtRatio(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f×", r)
	case r >= 10:
		return fmt.Sprintf("%.1f×", r)
	default:
		return fmt.Sprintf("%.2f×", r)
	}
}

// table renders rows as a Markdown table, readable as text too.
func table(rows []row) string {
	head := []string{"#", "figure", "pbx-agent", "compared with", "its figure", "ratio", "pbx-agent is"}
	cells := [][]string{head}
	for _, r := range rows {
		cells = append(cells, []string{r.Item, r.What, r.Agent, r.Against, r.Other, r.Ratio, r.Reads})
	}
	width := make([]int, len(head))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	var b strings.Builder
	line := func(c []string) {
		b.WriteString("|")
		for i, s := range c {
			fmt.Fprintf(&b, " %s%s |", s, strings.Repeat(" ", width[i]-len([]rune(s))))
		}
		b.WriteString("\n")
	}
	line(cells[0])
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, c := range cells[1:] {
		line(c)
	}
	return b.String()
}

// Figures in the units a reader expects.

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	}
}

func fmtRate(per float64, unit string) string {
	switch {
	case per >= 10_000:
		return fmt.Sprintf("%.0f %s", per, unit)
	default:
		return fmt.Sprintf("%.1f %s", per, unit)
	}
}

// fmtBound writes a latency, with ≥ when it is only a lower bound.
func fmtBound(d time.Duration, bound bool) string {
	if bound {
		return "≥" + fmtDur(d)
	}
	return fmtDur(d)
}

func fmtNs(ns float64) string { return fmtDur(time.Duration(ns)) }
