#!/usr/bin/env bash
# Prints the package version from git: the tag (v1.2.3 → 1.2.3) when HEAD is
# tagged, otherwise 0.1.0~git<commits>.<hash>, which sorts upward with every
# commit, so a newer build upgrades an older one.
set -euo pipefail
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	echo "${tag#v}"
	exit 0
fi
base=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || echo v0.1.0)
echo "${base#v}~git$(git rev-list --count HEAD).$(git rev-parse --short=8 HEAD)"
