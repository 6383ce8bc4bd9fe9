#!/usr/bin/env bash
# Tests scripts/version.sh in a throwaway git repository: every build sorts
# above the one before it (dpkg --compare-versions), across tags.
set -euo pipefail
version_sh=$(cd "$(dirname "$0")" && pwd)/version.sh
repo=$(mktemp -d)
trap 'rm -rf "$repo"' EXIT
cd "$repo"
git init -q
git config user.email test@example.invalid
git config user.name test
git config commit.gpgsign false
git config tag.gpgsign false
commit() { git commit -q --allow-empty -m "$1"; }

fail=0
prev=
# step NAME EXPECTED_PATTERN: the version now matches the pattern and sorts
# above the previous step's.
step() {
	local v
	v=$("$version_sh")
	# shellcheck disable=SC2053 # a glob pattern, on purpose
	if [[ $v != $2 ]]; then
		echo "FAIL $1: version $v, want $2"
		fail=1
	fi
	if [ -n "$prev" ] && ! dpkg --compare-versions "$v" gt "$prev"; then
		echo "FAIL $1: $v does not sort above $prev"
		fail=1
	fi
	echo "ok   $1: $v"
	prev=$v
}

commit one
step "before any tag" '0.1.0~git1.g????????'
commit two
step "a commit later" '0.1.0~git2.g????????'
git tag v0.1.0
step "on the first tag" '0.1.0'
commit three
step "a commit after the tag" '0.1.0+git1.g????????'
for i in $(seq 4 12); do commit "$i"; done
step "ten commits after the tag" '0.1.0+git10.g????????'
git tag -a -m "release candidate" v0.2.0-rc.1
step "on a pre-release tag" '0.2.0~rc.1'
commit thirteen
step "after the pre-release tag" '0.2.0~rc.1+git1.g????????'
git tag v0.2.0
step "on the release" '0.2.0'
git tag not-a-version
commit fourteen
step "a tag that is no version is ignored" '0.2.0+git1.g????????'
if ! dpkg --compare-versions "$prev" lt 0.2.1; then
	echo "FAIL $prev does not sort below the next release 0.2.1"
	fail=1
fi
exit $fail
