package main

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// goBench is one line of `go test -bench` output.
type goBench struct {
	Group, Sub string             // BenchmarkVerify, ParseKey
	Metrics    map[string]float64 // by unit: ns/op, B/op, allocs/op, ...
}

// procSuffix is the -GOMAXPROCS suffix go test adds to a name.
var procSuffix = regexp.MustCompile(`-\d+$`)

// parseGoBench reads the benchmark lines of `go test -bench` output and
// ignores the rest. A name's first element is its group, the rest its
// sub-benchmark ("" for a benchmark with none). Of a benchmark run more
// than once (-count), the fastest run is kept: on a shared machine, the
// least disturbed one.
func parseGoBench(r io.Reader) ([]goBench, error) {
	var out []goBench
	index := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line (a log line that starts so)
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		group, sub, _ := strings.Cut(name, "/")
		b := goBench{Group: group, Sub: sub, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			b.Metrics[f[i+1]] = v
		}
		ns, ok := b.Metrics["ns/op"]
		if !ok {
			continue
		}
		if i, seen := index[name]; seen {
			if ns < out[i].Metrics["ns/op"] {
				out[i] = b
			}
			continue
		}
		index[name] = len(out)
		out = append(out, b)
	}
	return out, sc.Err()
}

// baselineOf returns the baseline=... sub-benchmark of group, if any.
func baselineOf(all []goBench, group string) (goBench, bool) {
	for _, b := range all {
		if b.Group == group && strings.HasPrefix(b.Sub, "baseline=") {
			return b, true
		}
	}
	return goBench{}, false
}

// findBench returns the sub-benchmark of group named sub.
func findBench(all []goBench, group, sub string) (goBench, bool) {
	for _, b := range all {
		if b.Group == group && b.Sub == sub {
			return b, true
		}
	}
	return goBench{}, false
}
