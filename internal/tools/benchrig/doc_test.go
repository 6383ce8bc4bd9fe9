package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReportWrite renders the report from a few rows: the template must
// run, quote the rows it looks up, and list what is behind.
func TestReportWrite(t *testing.T) {
	rows := []row{
		{Item: "1", What: "of which its own: heap, stacks (RssAnon)", Agent: "5.5 MiB", Against: "node_exporter", Other: "5.2 MiB", Ratio: "1.06×", Reads: "level"},
		{Item: "1", What: "binary size", Agent: "19.5 MiB", Against: "node_exporter", Other: "13.1 MiB", Ratio: "1.49×", Reads: "**behind**"},
		{Item: "7", What: "command delivery", Agent: "n/a (command path not built)"},
		{Item: "2", What: "admission, 256 clients", Against: "bare", Ratio: "1.26×", Reads: "**behind**: leaves clients unanswered"},
	}
	rep := report{Meta: meta{Date: "2026-01-01 00:00 UTC", Command: "make bench", CPUs: 2}, Rows: rows, Table: table(rows),
		Footprint: []footprint{
			{name: "pbx-agent", end: usage{RSS: 22 << 20, Anon: 5<<20 + 300<<10}},
			{name: "node_exporter", end: usage{RSS: 18 << 20, Anon: 5 << 20}},
		},
		Took: time.Minute, opts: options{Idle: 60 * time.Second, Admission: 1500 * time.Millisecond, Rounds: 3, HBInterval: 250 * time.Millisecond}}
	path := filepath.Join(t.TempDir(), "performance.md")
	if err := rep.write(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{
		"measured in one run by `make bench`", "| 1 | binary size", "n/a (command path not built)",
		"idles for 60 s", "then 1.5 s measured", "`heartbeat.interval` 250 ms",
		"of the 4.0 MiB more that pbx-agent holds resident, 3.7 MiB is its binary's pages and 300.0 KiB its own memory",
		"- binary size, against node_exporter (1.49×)\n",
		"- admission, 256 clients, against bare (1.26×): leaves clients unanswered\n",
		"(not measured)", // rows the run did not make are said to be missing
	} {
		if !strings.Contains(strings.ToLower(doc), strings.ToLower(want)) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(doc, "<no value>") {
		t.Error("the template refers to a field that does not exist")
	}
}
