package main

import (
	"strings"
	"testing"
	"time"
)

func TestRatios(t *testing.T) {
	for _, c := range []struct {
		name          string
		ratio, reads  string
		wantR, wantRd string
	}{
		{"cost behind", first(costRatio(150, 100)), second(costRatio(150, 100)), "1.50×", "**behind**"},
		{"cost ahead", first(costRatio(50, 100)), second(costRatio(50, 100)), "0.50×", "ahead"},
		{"cost level", first(costRatio(105, 100)), second(costRatio(105, 100)), "1.05×", "level"},
		{"rate behind", first(rateRatio(30, 100)), second(rateRatio(30, 100)), "0.30×", "**behind**"},
		{"rate ahead", first(rateRatio(200, 100)), second(rateRatio(200, 100)), "2.00×", "ahead"},
		{"big", first(costRatio(12345, 10)), "", "1234×", ""},
		{"nothing against something", first(costRatio(1, 0)), second(costRatio(1, 0)), "∞", "**behind**"},
		{"nothing against nothing", first(costRatio(0, 0)), second(costRatio(0, 0)), "", "level"},
	} {
		if c.ratio != c.wantR || (c.wantRd != "" && c.reads != c.wantRd) {
			t.Errorf("%s: %q %q, want %q %q", c.name, c.ratio, c.reads, c.wantR, c.wantRd)
		}
	}
}

func first(a, _ string) string  { return a }
func second(_, b string) string { return b }

func TestTableAligns(t *testing.T) {
	out := table([]row{{Item: "1", What: "résumé µs", Agent: "1 ms"}, {Item: "2", What: "x", Agent: "10 ms", Ratio: "1.00×"}})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	w := len([]rune(lines[0]))
	for _, l := range lines {
		if len([]rune(l)) != w {
			t.Errorf("ragged table:\n%s", out)
			break
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	answered := ms(5, 1, 4, 2, 3, 6, 7, 8, 9, 10) // 1..10 ms
	if p, b := percentile(answered, nil, 0.5); p != 5*time.Millisecond || b {
		t.Errorf("p50 %v %v, want 5ms exact", p, b)
	}
	if p, _ := percentile(answered, nil, 0.99); p != 10*time.Millisecond {
		t.Errorf("p99 %v, want 10ms", p)
	}
	// A client waiting 2 s unanswered: p99 becomes a lower bound, p50
	// stays exact.
	if p, b := percentile(answered, ms(2000), 0.99); p != 2*time.Second || !b {
		t.Errorf("p99 with a waiter: %v %v, want ≥2s", p, b)
	}
	if p, b := percentile(answered, ms(2000), 0.5); p != 6*time.Millisecond || b {
		t.Errorf("p50 with a waiter: %v %v, want 6ms exact", p, b)
	}
	if p, b := percentile(nil, nil, 0.5); p != 0 || b {
		t.Errorf("empty: %v %v", p, b)
	}
}
