#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module for FUZZTIME each and prints
# one line per target: how long it ran, how many inputs it tried, and
# whether it found anything. A finding is written by go test under the
# package's testdata/fuzz/FuzzXxx/ (commit it: it becomes a seed) and makes
# the script exit 1 after the other targets ran.
#   FUZZTIME   time per target (default 30s)
#   FUZZPAR    workers per target (default: go test's, one per core)
#   FUZZPKGS   packages to search (default ./...)
set -uo pipefail
FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}
par=()
[ -n "${FUZZPAR:-}" ] && par=(-parallel "$FUZZPAR")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
summary=()
failed=0
# The integration package has no fuzz targets and builds both binaries in
# its TestMain: skip it when listing.
for pkg in $($GO list ${FUZZPKGS:-./...} | grep -v '/integration$'); do
	for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "== $pkg $target ($FUZZTIME)"
		$GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "${par[@]}" "$pkg" 2>&1 | tee "$log" | grep -v 'fuzz: elapsed' || true
		last=$(grep 'fuzz: elapsed' "$log" | tail -n 1)
		execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$last")
		elapsed=$(sed -n 's/.*elapsed: \([^,]*\),.*/\1/p' <<<"$last")
		if grep -q '^ok' "$log"; then
			result="no finding"
		else
			result="FINDING (see testdata/fuzz/$target)"
			failed=1
		fi
		summary+=("$(printf '%-46s %-22s %8s %12s  %s' "${pkg#github.com/pbx-agent/pbx-agent/}" "$target" "${elapsed:-?}" "${execs:-?}" "$result")")
	done
done
echo
printf '%-46s %-22s %8s %12s  %s\n' package target ran execs result
printf '%s\n' "${summary[@]}"
exit $failed
