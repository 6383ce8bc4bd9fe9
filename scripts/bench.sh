#!/usr/bin/env bash
# Runs the benchmarks and prints, for each benchmark with a sub-benchmark
# named baseline=..., every other sub-benchmark's time as a ratio of that
# baseline measured in the same run: absolute times on a shared machine do
# not hold, ratios do. Extra arguments go to go test (e.g. -benchtime=2s).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench . -benchmem "$@" ./... 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' || true)
echo "$out" | grep -E '^(Benchmark|FAIL|---)' || true
echo
echo "$out" | awk '
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	ns = ""; for (i = 2; i <= NF; i++) if ($(i+1) == "ns/op") ns = $i
	if (ns == "") next
	group = name; sub(/\/.*/, "", group); sub_ = name; sub(/^[^\/]*\//, "", sub_)
	if (sub_ ~ /^baseline/) { base[group] = ns; basename[group] = sub_ }
	else if (name != group) { n[group]++; subs[group, n[group]] = sub_; val[group, n[group]] = ns }
	if (!(group in order)) { order[group] = ++groups; gname[groups] = group }
}
END {
	printf "%-40s %-32s %14s %10s\n", "benchmark", "against", "ns/op", "ratio"
	for (g = 1; g <= groups; g++) {
		group = gname[g]
		if (!(group in base)) continue
		printf "%-40s %-32s %14.0f %10s\n", group, basename[group], base[group], "1.00"
		for (i = 1; i <= n[group]; i++)
			printf "%-40s %-32s %14.0f %9.2fx\n", "  " subs[group, i], "", val[group, i], val[group, i] / base[group]
	}
}'
