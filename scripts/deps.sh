#!/usr/bin/env bash
# Checks the Debian packages a target needs: `deps.sh demo` for make demo,
# `deps.sh` (check) for the build and tests, `deps.sh e2e` for the
# real-appliance rig. Go itself is expected at /usr/local/go or on PATH
# (Debian 12's is too old).
#
# Nothing is installed behind the operator's back: a missing package is
# named first, then installed when run as root (as CI, or an admin setting
# up a fresh machine, does); otherwise it stops with the command to run,
# and never runs sudo itself.
set -euo pipefail

case ${1:-check} in
demo)
	# Go fetches the modules over HTTPS, which needs the CA certificates.
	packages=(ca-certificates)
	;;
check)
	# lintian, dpkg-dev and groff-base: deb-check and the changelog and
	# man page tests read the package as Debian's tools do.
	packages=(git ca-certificates openssh-client openssh-server lintian dpkg-dev groff-base)
	;;
e2e)
	# The real-appliance rig (scripts/e2e.sh, as root): the container
	# (debootstrap, systemd-nspawn), its network of its own (iproute2 and
	# nftables), the portal's test CA (openssl), support's ssh client, the
	# package's checks (lintian) and the signed WMS repository (gnupg).
	packages=(debootstrap systemd-container iproute2 nftables openssl openssh-client lintian gnupg bc)
	;;
*)
	echo "usage: $0 [demo|check|e2e]" >&2
	exit 2
	;;
esac

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]}; installing them with apt-get"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
	else
		echo "deps: missing Debian packages: ${missing[*]}. Install them, then run make again:" >&2
		echo "  sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi

if ! command -v go >/dev/null; then
	echo "Go 1.26 is needed: install it at /usr/local/go (https://go.dev/doc/install)" >&2
	exit 1
fi
