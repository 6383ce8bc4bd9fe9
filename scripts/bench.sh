#!/usr/bin/env bash
# make bench: pbx-agent's figures beside the tools users would compare it
# with, measured in one run on this machine, as one table of figures and
# ratios, also written to docs/performance.md (see that file for what
# each figure means). Absolute figures on a shared machine do not hold;
# ratios to a baseline measured in the same run do. No figure decides
# anything: the script fails only when something could not be measured.
#
# 1. installs Debian's prometheus-node-exporter and mender-client when
#    missing (root or sudo), without starting their services;
# 2. builds pbx-agent and pbx-portal-sim as the .deb does (static,
#    stripped);
# 3. runs the go test benchmarks BENCHCOUNT times (default 3) for
#    BENCHTIME each (default 500ms), the fastest run of each kept; their
#    sub-benchmarks named baseline=... are the baselines;
# 4. runs internal/tools/benchrig: footprint, admission, start-up,
#    heartbeat, scrape; it folds in the go test figures and prints the
#    table. Extra arguments go to it (go run ./internal/tools/benchrig -h).
# OUT=FILE writes the report elsewhere; OUT= (empty) prints it only.
set -euo pipefail
started=$(date +%s)
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
out=${OUT-docs/performance.md}
benchtime=${BENCHTIME:-500ms}
benchcount=${BENCHCOUNT:-3}

packages=(prometheus-node-exporter mender-client)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing the programs compared against: ${missing[*]}"
	sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
	# The rig runs them as plain processes: no service of theirs should
	# start on install (a policy-rc.d that says no, if there is none).
	policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
		trap '$sudo rm -f "$policy"' EXIT
	fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[ -z "$policy" ] || $sudo rm -f "$policy"
	trap - EXIT
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== building pbx-agent and pbx-portal-sim as the .deb does"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/pbx-agent/pbx-agent/pkg/buildinfo.Version=$(scripts/version.sh)" \
	-o "$work/bin/" ./cmd/pbx-agent ./cmd/pbx-portal-sim
go build -o "$work/benchrig" ./internal/tools/benchrig

echo "== go test benchmarks (-benchtime $benchtime -count $benchcount)"
go test -run '^$' -bench . -benchmem -benchtime "$benchtime" -count "$benchcount" ./... 2>&1 | tee "$work/gobench.txt" | grep -E '^(Benchmark|FAIL|---)' || true
if grep -q '^FAIL' "$work/gobench.txt"; then
	echo "go test -bench failed:" >&2
	grep -B5 '^FAIL' "$work/gobench.txt" >&2
	exit 1
fi

echo "== benchrig"
"$work/benchrig" -bin "$work/bin" -gobench "$work/gobench.txt" ${out:+-out "$out"} -command "make bench" -started "$started" "$@"
