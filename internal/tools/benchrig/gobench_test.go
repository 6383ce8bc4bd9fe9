package main

import (
	"strings"
	"testing"
)

const goBenchOut = `goos: linux
BenchmarkVerify/baseline=ed25519.Verify-2         	   13802	    103826 ns/op	       0 B/op	       0 allocs/op
BenchmarkVerify/ParseKey-2                        	    9830	    133626 ns/op	    8545 B/op	     122 allocs/op
BenchmarkAdmissionInProcess/admit-2                   	  430285	      2548 ns/op	    392450 decisions/s	        14.40 x-baseline	     256 B/op	       6 allocs/op
BenchmarkSave/1KiB-2         	     141	   7947821 ns/op	   0.13 MB/s	    3789 B/op	      22 allocs/op
BenchmarkLonely-16 	 1000	 5 ns/op
BenchmarkLonely-16 	 1000	 9 ns/op
BenchmarkVerify/ParseKey-2                        	    9830	    233626 ns/op	    8545 B/op	     122 allocs/op
BenchmarkVerify logs a line that starts so
ok  	github.com/pbx-agent/pbx-agent/pkg/license	3.1s
`

func TestParseGoBench(t *testing.T) {
	all, err := parseGoBench(strings.NewReader(goBenchOut))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("%d benchmarks, want 5: %+v", len(all), all)
	}
	base, ok := baselineOf(all, "BenchmarkVerify")
	if !ok || base.Sub != "baseline=ed25519.Verify" || base.Metrics["ns/op"] != 103826 {
		t.Errorf("baseline %+v", base)
	}
	admit, ok := findBench(all, "BenchmarkAdmissionInProcess", "admit")
	if !ok || admit.Metrics["decisions/s"] != 392450 || admit.Metrics["allocs/op"] != 6 {
		t.Errorf("admit %+v", admit)
	}
	if lonely, ok := findBench(all, "BenchmarkLonely", ""); !ok || lonely.Metrics["ns/op"] != 5 {
		t.Errorf("a benchmark without sub-benchmarks, run twice: %+v; want the faster run", lonely)
	}
	if key, _ := findBench(all, "BenchmarkVerify", "ParseKey"); key.Metrics["ns/op"] != 133626 {
		t.Errorf("ParseKey %v ns/op; want the faster of its two runs", key.Metrics["ns/op"])
	}
	if _, ok := baselineOf(all, "BenchmarkSave"); ok {
		t.Error("BenchmarkSave has no baseline")
	}
}

func TestOtherGoBenchRows(t *testing.T) {
	all, _ := parseGoBench(strings.NewReader(goBenchOut + "BenchmarkNew/baseline=floor-2 100 10 ns/op\nBenchmarkNew/thing-2 100 25 ns/op\n"))
	rows := otherGoBenchRows(all)
	if len(rows) != 1 || rows[0].What != "BenchmarkNew/thing (go test)" || rows[0].Ratio != "2.50×" || !strings.Contains(rows[0].Reads, "behind") {
		t.Errorf("rows %+v", rows)
	}
}
