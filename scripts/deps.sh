#!/usr/bin/env bash
# Installs the Debian packages the build and tests need, when missing.
# Go itself is expected at /usr/local/go or on PATH (Debian 12's is too old).
set -euo pipefail

packages=(git ca-certificates openssh-client openssh-server)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! command -v go >/dev/null; then
	echo "Go 1.26 is needed: install it at /usr/local/go (https://go.dev/doc/install)" >&2
	exit 1
fi
