#!/usr/bin/env bash
# Prints the Debian package version from git, one that sorts upward with
# every commit (dpkg --compare-versions), so apt takes a newer build as an
# upgrade:
#   on a tag v1.2.3                  1.2.3
#   N commits after it               1.2.3+gitN.gHASH  (above 1.2.3, below 1.2.4)
#   on a pre-release tag v1.3.0-rc.1 1.3.0~rc.1        (below 1.3.0)
#   before any tag                   0.1.0~gitN.gHASH  (N counts every commit;
#                                    below the first release, 0.1.0)
set -euo pipefail

# debian_upstream turns a tag into a Debian upstream version: no "v", and a
# pre-release ("-rc.1") after "~", which sorts before the release.
debian_upstream() {
	local v=${1#v}
	case $v in
	*-*) echo "${v%%-*}~${v#*-}" ;;
	*) echo "$v" ;;
	esac
}

hash=$(git rev-parse --short=8 HEAD)
if described=$(git describe --tags --long --abbrev=8 --match 'v[0-9]*' 2>/dev/null); then
	# v1.2.3-N-gHASH; the tag itself may hold dashes.
	rest=${described%-g*}
	count=${rest##*-}
	tag=${rest%-*}
	if [ "$count" = 0 ]; then
		debian_upstream "$tag"
	else
		echo "$(debian_upstream "$tag")+git${count}.g${hash}"
	fi
	exit 0
fi
echo "0.1.0~git$(git rev-list --count HEAD).g${hash}"
