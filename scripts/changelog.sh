#!/usr/bin/env bash
# Prints a Debian changelog entry for the package version $1, listing the
# commit subjects since the last tag.
set -euo pipefail
version=$1
since=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)
range=${since:+$since..}HEAD
echo "pbx-agent ($version) unstable; urgency=medium"
echo
# Debian wants lines of at most 80 characters: long subjects wrap, their
# continuation lines indented under the first.
git log --no-merges --format='%s' "$range" | head -200 |
	while IFS= read -r subject; do
		fold -s -w 76 <<<"$subject" | sed -e 's/ *$//' -e '1s/^/  * /' -e '2,$s/^/    /'
	done
echo
echo " -- pbx-agent developers <dev@pbx-agent.invalid>  $(git log -1 --format=%aD HEAD)"
