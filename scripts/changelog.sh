#!/usr/bin/env bash
# Prints a Debian changelog entry for the package version $1, listing the
# commit subjects since the last tag.
set -euo pipefail
version=$1
since=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)
range=${since:+$since..}HEAD
echo "pbx-agent ($version) unstable; urgency=medium"
echo
# Debian wants lines of at most 80 characters: long subjects are wrapped.
git log --no-merges --max-count=200 --format='%s' "$range" | while IFS= read -r subject; do
	printf '%s\n' "$subject" | fold -s -w 74 | sed -e 's/ *$//' -e '1s/^/  * /' -e '2,$s/^/    /'
done
echo
echo " -- pbx-agent developers <dev@pbx-agent.invalid>  $(git log -1 --format=%aD HEAD)"
