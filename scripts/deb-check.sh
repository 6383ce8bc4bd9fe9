#!/usr/bin/env bash
# Checks the .deb of the current commit to Debian's conventions, without a
# container:
#  - two `make deb` runs give byte-identical packages (reproducible build);
#  - lintian finds no error or warning;
#  - as root: installed into an empty root with dpkg --root (the maintainer
#    scripts then run with DPKG_ROOT set, outside any chroot), it creates
#    its users there, never on this machine, and touches no running service;
#    remove masks nothing; purge removes state and configuration but keeps
#    the users and groups.
# The throwaway portal root key of the build is made by pbx-portal-sim.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

work=$(mktemp -d /tmp/pbx-deb-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
log() { printf '[deb-check] %s\n' "$*"; }
fail() { log "FAIL: $*"; exit 1; }

version=$(scripts/version.sh)
go build -o "$work/" ./cmd/pbx-portal-sim
"$work/pbx-portal-sim" keys init --data "$work/portal" >/dev/null
deb=dist/pbx-agent_${version}_amd64.deb

build() { make -s deb DEB_VERSION="$version" PORTAL_ROOTS="$work/portal/keyring" >/dev/null; }
build
cp "$deb" "$work/first.deb"
build
first=$(sha256sum < "$work/first.deb" | cut -d' ' -f1)
second=$(sha256sum < "$deb" | cut -d' ' -f1)
[ "$first" = "$second" ] || fail "two builds of one commit differ: $first, $second (diffoscope $work/first.deb $deb)"
log "reproducible: two builds of $version are identical, sha256 $first"

if ! lintian --fail-on error,warning "$deb" > "$work/lintian.log" 2>&1; then
	grep -v 'running with root privileges' "$work/lintian.log"
	fail "lintian found problems in $deb"
fi
log "lintian: no errors or warnings"

if [ "$(id -u)" != 0 ]; then
	log "install into a separate root: skipped (needs root)"
	exit 0
fi
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc" "$root/var/log"
touch "$root/var/lib/dpkg/status"
host_passwd=$(sha256sum /etc/passwd /etc/group)
inroot() {
	dpkg --root="$root" --log="$root/var/log/dpkg.log" --force-script-chrootless \
		--force-depends "$@" > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg $*"; }
}
inroot --install "$deb"
for u in pbx-agent pbx-support; do
	grep -q "^$u:" "$root/etc/passwd" || fail "user $u not created in the root"
done
[ "$(sha256sum /etc/passwd /etc/group)" = "$host_passwd" ] || fail "installing into $root changed this machine's users"
gid=$(awk -F: '$1 == "pbx-agent" { print $3 }' "$root/etc/group")
[ "$(stat -c '%a %u:%g' "$root/etc/pbx-agent/agent.yaml")" = "640 0:$gid" ] || fail "agent.yaml is not 0640 root:pbx-agent in the root"
[ -L "$root/etc/systemd/system/multi-user.target.wants/pbx-agent.service" ] || fail "pbx-agent.service not enabled in the root"
log "install with DPKG_ROOT: users, permissions and enabled units in the root only"

# dpkg's error paths: the scripts accept every argument it may pass, and
# postinst abort-* puts the service back as configure does: here, it lifts
# the mask an older version's remove left.
info=$root/var/lib/dpkg/info
dsh() { DPKG_ROOT=$root DPKG_MAINTSCRIPT_PACKAGE=pbx-agent DPKG_MAINTSCRIPT_NAME=postrm deb-systemd-helper "$@"; }
dsh mask pbx-agent.service
[ "$(readlink "$root/etc/systemd/system/pbx-agent.service")" = /dev/null ] || fail "could not mask the unit as older versions did"
for args in "postinst abort-upgrade 0.0.1" "postinst abort-remove" "postinst abort-deconfigure" \
	"prerm upgrade 9.9.9" "prerm failed-upgrade 0.0.1" "postrm abort-install" "postrm abort-upgrade 0.0.1" \
	"postrm failed-upgrade 0.0.1" "postrm upgrade 9.9.9"; do
	# shellcheck disable=SC2086 # the script, then its arguments
	set -- $args
	script=$1
	shift
	DPKG_ROOT=$root DPKG_MAINTSCRIPT_NAME=$script DPKG_MAINTSCRIPT_PACKAGE=pbx-agent DPKG_MAINTSCRIPT_ARCH=amd64 \
		sh "$info/pbx-agent.$script" "$@" 2>"$work/script.err" || { cat "$work/script.err"; fail "$script $* exits non-zero"; }
	if [ -s "$work/script.err" ]; then cat "$work/script.err"; fail "$script $* wrote errors"; fi
done
[ -f "$root/etc/pbx-agent/agent.yaml" ] || fail "an abort or upgrade argument removed the configuration"
[ -L "$root/etc/systemd/system/multi-user.target.wants/pbx-agent.service" ] || fail "an abort argument left pbx-agent.service disabled"
[ ! -e "$root/etc/systemd/system/pbx-agent.service" ] || fail "postinst abort-upgrade left the unit masked"
log "maintainer scripts: abort-*, upgrade and failed-upgrade arguments run and keep the installation"

inroot --remove pbx-agent
if find "$root/etc/systemd/system" -lname /dev/null | grep .; then fail "remove masked units"; fi
inroot --purge pbx-agent
for u in pbx-agent pbx-support; do
	grep -q "^$u:" "$root/etc/passwd" || fail "purge deleted user $u"
	grep -q "^$u:" "$root/etc/group" || fail "purge deleted group $u"
done
for d in etc/pbx-agent var/lib/pbx-agent; do
	[ ! -e "$root/$d" ] || fail "purge left /$d"
done
if find "$root/etc/systemd/system" -name 'pbx-*' | grep .; then fail "purge left unit links"; fi
log "remove masks nothing; purge keeps the users and groups, removes state and configuration"
