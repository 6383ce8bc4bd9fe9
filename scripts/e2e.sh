#!/usr/bin/env bash
# The real-appliance rig: boot a Debian 12 container with systemd as PID 1
# (systemd-nspawn -b), install the pbx-agent .deb, and exercise it through
# systemd, D-Bus and polkit for real, against the reference portal running
# on the host.
#
# The container sits on a network of its own, as an appliance behind a
# site's NAT does: it connects out to the portal (HTTPS, with a test CA the
# agent pins), and nothing on the host can connect in (see make_network).
# Before the purge, it is cut off every network and runs as an air-gapped
# PBX, activated and renewed by files the host carries in and out through
# its file system.
#
# Needs root. Installs what it uses when missing (scripts/deps.sh e2e), and
# caches the container's root file system (PBX_E2E_CACHE, default
# /var/cache/pbx-agent-e2e); the container runs on a throwaway overlay,
# mounted on the host so that it survives a reboot of the container.
set -uo pipefail

cd "$(dirname "$0")/.."
# One rig at a time on a machine: the container's name, its cache, its
# network and the portal's port are shared.
exec 9>/run/lock/pbx-agent-e2e.lock
flock 9
cache=${PBX_E2E_CACHE:-/var/cache/pbx-agent-e2e}
mirror=${PBX_E2E_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /tmp/pbx-e2e.XXXXXX)
rootfs=$cache/rootfs
# The container's network (PBX_E2E_NET, a free /24): the host, where the
# portal listens, is .1 on the bridge; the container is .2 on its veth.
net=${PBX_E2E_NET:-10.231.72}
bridge=pbx-e2e0 firewall=pbx_e2e
host_ip=$net.1 ct_ip=$net.2
portal_addr=$host_ip:${PBX_E2E_PORTAL_PORT:-18780}
portal_url=https://$portal_addr
nspawn_pid= container_pid= portal_pid= root_mounted= root_kid= net_made=
# sim runs the portal's admin commands, trusting its test CA; it is also
# support's relay into the appliance.
sim_argv=(env SSL_CERT_FILE="$work/dist/portal-ca.pem" "$work/pbx-portal-sim" --portal "$portal_url")
steps=() failed=0

log() { printf '\033[1m[e2e]\033[0m %s\n' "$*"; }
die() { log "FATAL: $*"; exit 1; }

teardown() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		kill -TERM "$nspawn_pid" 2>/dev/null # nspawn shuts the container down
		for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$nspawn_pid" 2>/dev/null || true
	fi
	[ -n "$portal_pid" ] && kill "$portal_pid" 2>/dev/null
	wait 2>/dev/null
	[ -z "$net_made" ] || remove_network
	if [ -n "$root_mounted" ] && ! umount "$work/root" 2>/dev/null; then
		umount -l "$work/root" 2>/dev/null
		rm -rf "$work/dist" "$work/portal" # not the overlay: rm would go through it
		return
	fi
	rm -rf "$work"
}
trap teardown EXIT

# ct runs a command inside the container as root, through its systemd's
# namespaces.
# Every command is bounded, so a hung step fails instead of hanging the rig.
ct() { nsenter -t "$container_pid" -m -u -i -n -p -C -- timeout 60 "$@"; }
# ct_as runs a command inside the container as another user, with that user's groups.
ct_as() { local user=$1; shift; ct setpriv --reuid="$user" --regid="$user" --init-groups "$@"; }

# step NAME FUNCTION runs one assertion step, timing it; a failed step is
# recorded and the rig goes on to the summary.
step() {
	local name=$1; shift
	local start=$(date +%s.%N)
	log "── $name"
	# Neither in an if nor before || or &&: bash ignores set -e there,
	# subshells included, and a step would pass on its last command alone.
	# Without pipefail, `cmd | grep -q x` means "cmd printed x": grep -q
	# exits at its first match and would fail a long writer with SIGPIPE.
	( set -e +o pipefail; "$@" ) > "$work/step.log" 2>&1
	local rc=$?
	if [ "$rc" -eq 0 ]; then
		steps+=("PASS  $(printf '%6.2fs' "$(echo "$(date +%s.%N) - $start" | bc)")  $name")
		# PBX_E2E_VERBOSE=1 shows what passing steps printed too.
		[ -z "${PBX_E2E_VERBOSE:-}" ] || sed 's/^/    /' "$work/step.log"
	else
		steps+=("FAIL  $(printf '%6.2fs' "$(echo "$(date +%s.%N) - $start" | bc)")  $name")
		failed=$((failed + 1))
		sed 's/^/    /' "$work/step.log"
	fi
}

# eventually runs a command until it succeeds, for at most $1 seconds.
# status_json prints the agent's status document. `pbx-agent status` exits
# with its state's code (0 active or offline, 10 to 19 the other states, as
# its manual lists them), so any of these means the daemon answered; 2
# means it could not be asked.
status_json() {
	local rc=0
	ct pbx-agent status --json || rc=$?
	[ "$rc" -eq 0 ] || { [ "$rc" -ge 10 ] && [ "$rc" -le 19 ]; }
}

# status_exit prints the exit code of `pbx-agent status`.
status_exit() {
	local rc=0
	ct pbx-agent status > /dev/null 2>&1 || rc=$?
	echo "$rc"
}

eventually() {
	local secs=$1; shift
	for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	"$@"
}

require() {
	[ "$(id -u)" -eq 0 ] || die "the rig needs root (systemd-nspawn)"
	scripts/deps.sh e2e || die "the rig's Debian packages are missing"
}

make_rootfs() {
	if [ -x "$rootfs/usr/lib/systemd/systemd" ]; then
		log "container root file system: $rootfs (cached)"
		return
	fi
	log "making the container root file system with debootstrap (cached in $rootfs)"
	rm -rf "$rootfs.tmp"
	mkdir -p "$cache"
	debootstrap --variant=minbase \
		--include=systemd,dbus,systemd-sysv,libpam-systemd,polkitd,openssh-server \
		bookworm "$rootfs.tmp" "$mirror" > "$work/debootstrap.log" 2>&1 ||
		{ tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
	# A machine id and a hostname of its own; no getty on the console.
	rm -f "$rootfs.tmp/etc/machine-id"
	echo pbx-e2e > "$rootfs.tmp/etc/hostname"
	mv "$rootfs.tmp" "$rootfs"
}

build() {
	log "building the portal and the .deb (twice: the second, a newer version, for the upgrade)"
	go build -o "$work/" ./cmd/pbx-portal-sim || die "building pbx-portal-sim failed"
	# The portal's key is made before the package, which embeds it as its
	# portal root, as a release embeds the vendor's: the agent trusts it
	# with nothing in /etc/pbx-agent/portal-keys.
	root_kid=$("$work/pbx-portal-sim" keys init --data "$work/portal") || die "making the portal's key failed"
	# The version once: a commit made while the rig builds must not split it.
	version=$(scripts/version.sh)
	make -s deb DEB_VERSION="$version" PORTAL_ROOTS="$work/portal/keyring" >/dev/null || die "make deb failed"
	deb1=$(ls dist/pbx-agent_"${version}"_amd64.deb)
	mkdir -p "$work/dist"
	cp "$deb1" "$work/dist/pbx-agent-1.deb"
	if ! lintian --fail-on error,warning "$deb1" > "$work/lintian.log" 2>&1; then
		grep -v 'running with root privileges' "$work/lintian.log"
		die "lintian found problems in $deb1 (fix them, or override one with a reason in packaging/lintian-overrides)"
	fi
	log "lintian: no errors or warnings"
	make -s deb DEB_VERSION="${version}+e2e" PORTAL_ROOTS="$work/portal/keyring" >/dev/null || die "make deb (upgrade) failed"
	cp "dist/pbx-agent_${version}+e2e_amd64.deb" "$work/dist/pbx-agent-2.deb"
	# A WMS stand-in that writes a SQLite user database (static: pure Go).
	CGO_ENABLED=0 go build -o "$work/dist/" ./internal/tools/seedusers || die "building seedusers failed"
	make_wms_repo || die "making the stand-in WMS repository failed"
}

# The stand-in WMS: a package "wms" in three versions, the third unhealthy
# (its health file says broken), in a flat apt repository (rel70) signed
# with a throwaway key made here; the container has gpgv, which apt uses
# to check it against the keyring named in Signed-By.
wms_v1=7.02.20250609.1 wms_v2=7.02.20250701.2 wms_v3=7.02.20250801.3
make_wms_repo() {
	local repo=$work/dist/wms-repo/rel70 v health src deb
	mkdir -p "$repo"
	for v in "$wms_v1:ok" "$wms_v2:ok" "$wms_v3:broken"; do
		health=${v#*:} v=${v%%:*} src=$work/wms-src/$v
		mkdir -p "$src/DEBIAN" "$src/usr/share/wms" "$src/etc/wms"
		printf 'Package: wms\nVersion: %s\nArchitecture: all\nMaintainer: e2e <e2e@example.com>\nDescription: stand-in WMS\n' "$v" > "$src/DEBIAN/control"
		echo /etc/wms/wms.conf > "$src/DEBIAN/conffiles"
		printf '#!/bin/sh\nset -e\necho "wms postinst $1 ${2:-}"\n' > "$src/DEBIAN/postinst"
		chmod 0755 "$src/DEBIAN/postinst"
		echo "$health" > "$src/usr/share/wms/health"
		echo "listen = 5060" > "$src/etc/wms/wms.conf"
		deb=$repo/wms_${v}_all.deb
		dpkg-deb --root-owner-group -Zgzip --build "$src" "$deb" >/dev/null
		{ dpkg-deb --field "$deb"; echo "Filename: ./$(basename "$deb")"; echo "Size: $(stat -c %s "$deb")"
			echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"; echo; } >> "$repo/Packages"
	done
	{ echo "Origin: pbx-agent e2e"; echo "Date: $(date -Ru)"; echo "SHA256:"
		echo " $(sha256sum "$repo/Packages" | cut -d' ' -f1) $(stat -c %s "$repo/Packages") Packages"; } > "$repo/Release"
	local gnupg=$work/gnupg gpg=(gpg --batch --quiet --pinentry-mode loopback --passphrase '')
	mkdir -m 0700 "$gnupg"
	GNUPGHOME=$gnupg "${gpg[@]}" --quick-gen-key 'pbx-agent e2e WMS archive <e2e@example.com>' ed25519 sign never
	GNUPGHOME=$gnupg "${gpg[@]}" --output "$work/dist/wms-archive-keyring.gpg" --export
	GNUPGHOME=$gnupg "${gpg[@]}" --output "$repo/InRelease" --clearsign "$repo/Release"
	GNUPGHOME=$gnupg gpgconf --kill all 2>/dev/null || true
}

# make_network gives the container a network of its own, as an appliance
# behind a site's NAT has: a bridge on the host holding the portal's
# address, which nspawn's veth pair joins at every boot (the bridge, and so
# the portal's listener, outlive a reboot of the container), and an
# nftables table refusing every new connection from the host into it,
# whatever the address family. The container connects out to the portal;
# nothing connects in. No default route: the portal is all it reaches.
make_network() {
	# A rig killed before its teardown leaves its bridge and table.
	ip link del "$bridge" 2>/dev/null
	nft delete table inet "$firewall" 2>/dev/null
	if ip -4 addr show to "$net.0/24" | grep -q inet || ip -4 route show to match "$ct_ip" | grep -qv '^default'; then
		die "the host already uses $net.0/24: set PBX_E2E_NET to a free /24 prefix (for example PBX_E2E_NET=10.231.73)"
	fi
	net_made=1
	ip link add "$bridge" type bridge && ip addr add "$host_ip/24" dev "$bridge" && ip link set "$bridge" up ||
		die "cannot make the container's bridge $bridge"
	nft -f - <<NFT || die "cannot load the container's firewall (nftables)"
table inet $firewall {
	chain into_container {
		type filter hook output priority filter; policy accept;
		oifname "$bridge" ct state new meta l4proto tcp counter reject with tcp reset
		oifname "$bridge" ct state new reject
	}
	chain forward_into_container {
		type filter hook forward priority filter; policy accept;
		oifname "$bridge" ct state new meta l4proto tcp reject with tcp reset
		oifname "$bridge" ct state new reject
	}
}
NFT
}

remove_network() {
	ip link del "$bridge" 2>/dev/null
	nft delete table inet "$firewall" 2>/dev/null
}

# refused_into_container is the number of TCP connections from the host
# the firewall has refused (a reset refuses at once; an ICMP error would
# take the host a second).
refused_into_container() { nft list chain inet "$firewall" into_container | sed -n 's/.* counter packets \([0-9]*\) .*/\1/p'; }

# address_container gives the container's end of its veth pair its address
# (from the host: the container has no ip tool and runs no networkd).
address_container() {
	nsenter -t "$container_pid" -n ip addr add "$ct_ip/24" dev host0 &&
		nsenter -t "$container_pid" -n ip link set host0 up ||
		die "cannot address the container's host0: $(nsenter -t "$container_pid" -n ip -br link 2>&1)"
}

# make_portal_cert makes a throwaway CA and the portal's certificate for
# its address; the agent pins the CA (portal.ca_file), as a site whose
# portal has a private CA does, and the container trusts nothing else.
make_portal_cert() {
	local ca=$work/ca
	mkdir -m 0700 "$ca"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=pbx-agent e2e portal CA' \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
		-keyout "$ca/ca.key" -out "$work/dist/portal-ca.pem" 2>/dev/null &&
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host_ip" \
			-keyout "$ca/portal.key" -out "$ca/portal.csr" 2>/dev/null &&
		openssl x509 -req -in "$ca/portal.csr" -CA "$work/dist/portal-ca.pem" -CAkey "$ca/ca.key" \
			-set_serial "0x$(openssl rand -hex 8)" -days 2 -out "$ca/portal.pem" \
			-extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$host_ip") 2>/dev/null ||
		die "openssl could not make the portal's certificate"
}

start_portal() {
	"$work/pbx-portal-sim" serve --listen "$portal_addr" --data "$work/portal" --interval 2s \
		--tls-cert "$work/ca/portal.pem" --tls-key "$work/ca/portal.key" 2> "$work/portal.log" &
	portal_pid=$!
	eventually 10 sim clock || die "the portal did not start: $(cat "$work/portal.log")"
}
sim() { "${sim_argv[@]}" "$@"; }
# sim_shows PATTERN: the portal's view of the PBX matches PATTERN.
sim_shows() { sim pbx show e2e.example | grep -q "$1"; }

# mount_root mounts the container's root: an overlay of the cached root file
# system on the host, so the cache stays untouched and what the rig installs
# survives a reboot of the container (nspawn's --volatile=overlay keeps it in
# a tmpfs that goes with nspawn, which exits when the container reboots).
mount_root() {
	mkdir -p "$work/upper" "$work/overlay-work" "$work/root"
	mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$work/upper,workdir=$work/overlay-work" "$work/root" ||
		die "cannot mount the container's overlay root"
	root_mounted=1
}

boot() {
	log "booting the container"
	container_pid=
	systemd-nspawn --quiet --register=no --keep-unit --console=passive \
		--machine=pbx-e2e -D "$work/root" --network-bridge="$bridge" \
		--bind-ro="$work/dist:/mnt/dist" \
		-b > "$work/nspawn.log" 2>&1 &
	nspawn_pid=$!
	local self_ns=$(readlink /proc/self/ns/pid)
	for _ in $(seq 300); do
		for pid in $(pgrep -x systemd); do
			if [ "$(readlink /proc/"$pid"/ns/pid)" != "$self_ns" ] && grep -q "^PPid:\s*$nspawn_pid$" /proc/"$pid"/status 2>/dev/null; then
				container_pid=$pid
			fi
		done
		[ -n "$container_pid" ] && break
		kill -0 "$nspawn_pid" 2>/dev/null || die "systemd-nspawn exited: $(cat "$work/nspawn.log")"
		sleep 0.1
	done
	[ -n "$container_pid" ] || die "no systemd in the container"
	address_container
	local state
	eventually 30 ct test -S /run/systemd/private || die "the container's systemd never listened: $(cat "$work/nspawn.log")"
	state=$(ct timeout 60 systemctl is-system-running --wait 2>"$work/boot.err")
	log "container systemd (pid $container_pid): $state"
	case $state in
	running | degraded) ;;
	*) die "the container did not boot: $state $(cat "$work/boot.err" "$work/nspawn.log")" ;;
	esac
}

# ── the steps ──────────────────────────────────────────────────────────────

install_first() {
	ct dpkg -i /mnt/dist/pbx-agent-1.deb
	ct install -m 0644 /mnt/dist/portal-ca.pem /etc/pbx-agent/portal-ca.pem
	ct sh -c "cat > /etc/pbx-agent/agent.yaml" <<YAML
portal:
  url: $portal_url
  ca_file: /etc/pbx-agent/portal-ca.pem
identity:
  model: WPBX-VM
heartbeat:
  interval: 1s
YAML
	ct systemctl restart pbx-agent.service
	eventually 10 ct systemctl is-active --quiet pbx-agent.service
}

# config_check: the installed configuration passes; a copy with two typos
# gets both listed, each with the key it misspells, and exit 1.
config_check() {
	ct pbx-agent config check | grep -qx '/etc/pbx-agent/agent.yaml: OK'
	ct sh -c 'sed "s/^  url:/  ulr:/; s/^  interval:/  intervall:/" /etc/pbx-agent/agent.yaml > /root/typos.yaml'
	local rc=0
	ct pbx-agent --config /root/typos.yaml config check > "$work/typos" 2>&1 || rc=$?
	[ "$rc" = 1 ] || { echo "config check: exit $rc, want 1"; cat "$work/typos"; return 1; }
	grep -q 'config portal.ulr: unknown key: did you mean portal.url?' "$work/typos"
	grep -q 'config heartbeat.intervall: unknown key: did you mean heartbeat.interval?' "$work/typos"
}

verify_units() {
	ct systemd-analyze verify /usr/lib/systemd/system/pbx-agent.service \
		/usr/lib/systemd/system/pbx-agent.socket /usr/lib/systemd/system/pbx-agent-http.socket \
		/usr/lib/systemd/system/pbx-agent-sshd@.service /usr/lib/systemd/system/pbx-agent-sshd-tunnel@.service \
		/usr/lib/systemd/system/pbx-agent-wms-upgrade@.service \
		/usr/lib/systemd/system/pbx-licence-active.target /usr/lib/systemd/system/pbx-licence-stopped.target
}

service_hardened_and_watched() {
	ct systemctl is-active pbx-agent.service
	local pid user watchdog
	pid=$(ct systemctl show -P MainPID pbx-agent.service)
	user=$(ct stat -c %U "/proc/$pid")
	[ "$user" = pbx-agent ] || { echo "runs as $user"; return 1; }
	watchdog=$(ct systemctl show -P WatchdogUSec pbx-agent.service)
	[ "$watchdog" != 0 ] && [ "$watchdog" != infinity ] || { echo "watchdog: $watchdog"; return 1; }
	# Armed: systemd has seen a ping since the start.
	eventually 40 test "$(ct systemctl show -P WatchdogTimestampMonotonic pbx-agent.service)" != 0
	ct systemctl is-active pbx-licence-active.target
	# systemd binds the socket and the status port and hands both over.
	ct systemctl is-active pbx-agent.socket pbx-agent-http.socket
	ct systemctl is-enabled pbx-agent.socket pbx-agent-http.socket
	[ "$(ct stat -c '%G %a' /run/pbx-agent/agent.sock)" = "pbx-agent 660" ] || { ct stat /run/pbx-agent/agent.sock; return 1; }
	[ "$(ct pbx-agent status --json | grep -c '"systemd": true')" = 2 ] || { ct pbx-agent status --json; return 1; }
}

# trust_is_embedded: the package is a release build; it trusts the portal's
# key as its embedded root alone, with no key configured, and does not say
# it is a development build.
trust_is_embedded() {
	status_json > "$work/status.json"
	grep -q '"roots": "embedded"' "$work/status.json" || { cat "$work/status.json"; return 1; }
	grep -q "\"kid\": \"$root_kid\"" "$work/status.json" || { echo "root $root_kid not trusted"; cat "$work/status.json"; return 1; }
	[ "$(grep -c '"kid"' "$work/status.json")" = 1 ] || { echo "more keys than the root"; cat "$work/status.json"; return 1; }
	# Not `! cmd`: set -e ignores a negated command, and the step would pass.
	if ct journalctl -u pbx-agent.service --no-pager | grep -q 'development build'; then
		echo "the journal says: development build"; return 1
	fi
	ct pbx-agent status | grep -q '^Portal keys *roots embedded in this build'
}

activate() {
	status_exit_is 10 # unactivated
	sim pbx create --name e2e.example --model WPBX-VM --term monthly --users uc-premium=10 --users pbx-basic=3 > "$work/key"
	ct pbx-agent activate < "$work/key"
	ct pbx-agent status --json | grep -q '"state": "active"'
	status_exit_is 0
}

# host_connects PORT: the host opens a TCP connection to the container's
# address at PORT.
host_connects() { timeout 5 bash -c "exec 3<>/dev/tcp/$ct_ip/$1" 2>/dev/null; }

# refused_from_host PORT: the host cannot connect to the container's
# address at PORT, and the firewall's counter shows the firewall refused.
refused_from_host() {
	local before
	before=$(refused_into_container)
	if host_connects "$1"; then echo "the host connected to $ct_ip:$1"; return 1; fi
	[ "$(refused_into_container)" -gt "$before" ] || { echo "$ct_ip:$1 failed, but not by the firewall"; return 1; }
}

# network_of_its_own: the container has its address and a route to its
# network alone; the agent, just activated, reached the portal on it over
# HTTPS, trusting the pinned CA (the container has no other). The
# container's own sshd listens on every address at port 22, yet the host
# cannot connect to it: the firewall refuses.
network_of_its_own() {
	nsenter -t "$container_pid" -n ip -4 -br addr show dev host0 | grep -q " $ct_ip/24"
	nsenter -t "$container_pid" -n ip -4 route > "$work/routes"
	if grep -q '^default' "$work/routes"; then echo "the container has a default route:"; cat "$work/routes"; return 1; fi
	ct grep -qx "  url: $portal_url" /etc/pbx-agent/agent.yaml
	ct pbx-agent status --json | grep -q '"last_success": "'
	if ct test -e /etc/ssl/certs/ca-certificates.crt; then echo "the container trusts system CAs"; return 1; fi
	# Every address: 0.0.0.0, or :: (which takes IPv4 too).
	listeners 22 | grep -Eqx '0+' || { echo "the container's sshd does not listen on port 22: $(listeners 22)"; return 1; }
	refused_from_host 22
}

# metrics_under_the_unit scrapes GET /metrics on listen.http inside the
# container (bash alone: no curl there): served under the hardened unit,
# with the process and Go collectors; the alert rules are installed.
metrics_under_the_unit() {
	ct bash -c 'exec 3<>/dev/tcp/127.0.0.1/9731 && printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' > "$work/metrics"
	grep -q '^pbx_license_state{state="active"} 1' "$work/metrics"
	grep -q '^pbx_license_users_licensed{profile="uc-premium"} 10' "$work/metrics"
	grep -q '^process_resident_memory_bytes ' "$work/metrics"
	grep -q '^go_goroutines ' "$work/metrics"
	# process_start_time_seconds needs /proc/stat, which ProcSubset=pid hides.
	grep -q '^pbx_agent_start_time_seconds [0-9]' "$work/metrics"
	grep -q '^pbx_pbx_info{model="WPBX-VM",name="e2e.example",pbx_id="[^"]*",term="monthly"} 1' "$work/metrics"
	ct test -f /usr/share/pbx-agent/prometheus/pbx-agent.rules.yml
	ct test -f /usr/share/doc/pbx-agent/runbook.md
}

# journal_priorities: the daemon logs to the journal natively (stderr is
# its journal stream), so journalctl -p finds its errors and warnings and
# leaves its information out; fields are the log's attributes, and the
# message repeats no timestamp. The users database of the default
# configuration does not exist yet: counting fails, an error.
journal_priorities() {
	ct journalctl -u pbx-agent.service -p err --no-pager -o cat > "$work/journal.err"
	grep -q '^counting users failed' "$work/journal.err" || { echo "no error line at -p err:"; cat "$work/journal.err"; return 1; }
	ct journalctl -u pbx-agent.service -p warning --no-pager -o cat > "$work/journal.warning"
	grep -q '^counting users failed' "$work/journal.warning"
	if grep -q '^telephony enforcement' "$work/journal.warning"; then
		echo "an information line at -p warning"; return 1
	fi
	ct journalctl -u pbx-agent.service -p info --no-pager -o cat | grep -q '^telephony enforcement by='
	ct journalctl -u pbx-agent.service -p err --no-pager -o verbose > "$work/journal.verbose"
	grep -q '^ *PRIORITY=3$' "$work/journal.verbose"
	grep -q '^ *SYSLOG_IDENTIFIER=pbx-agent$' "$work/journal.verbose"
	grep -q '^ *ERR=' "$work/journal.verbose"
	if grep -q '^ *MESSAGE=.*time=' "$work/journal.verbose"; then
		echo "a message repeats the time:"; grep '^ *MESSAGE=' "$work/journal.verbose"; return 1
	fi
}

status_by_group() {
	ct useradd --create-home --groups pbx-agent admin
	ct useradd --create-home outsider
	ct pbx-agent status | grep -q '^State *active'
	ct_as admin pbx-agent status | grep -q '^State *active'
	if ct_as outsider pbx-agent status > "$work/outsider" 2>&1; then
		echo "a user outside pbx-agent read the status"; return 1
	fi
	grep -qi "permission" "$work/outsider"
}

# writes_refused_to_readers: activate and refresh, the write verbs, are
# refused to the pbx-agent group (readers) by the daemon, naming what would
# let them in, and to users outside it by the socket's mode; root writes.
writes_refused_to_readers() {
	local who verb
	for who in admin outsider; do
		for verb in activate refresh; do
			if ct_as "$who" pbx-agent "$verb" < "$work/key" > "$work/denied" 2>&1; then
				echo "$who may $verb"; return 1
			fi
			grep -qi 'permission' "$work/denied" || { echo "$who $verb:"; cat "$work/denied"; return 1; }
		done
	done
	ct_as admin pbx-agent refresh 2>&1 | grep -q 'writes need root'
	ct pbx-agent refresh
}

# reload_applies_live_keys: systemctl reload (SIGHUP) applies a new
# heartbeat interval in the same process, and reports listen.http as
# needing a restart, in the journal, the status and systemd's status line;
# a file that no longer parses keeps the running configuration.
reload_applies_live_keys() {
	local pid since
	pid=$(ct systemctl show -P MainPID pbx-agent.service)
	ct cp /etc/pbx-agent/agent.yaml /root/agent.yaml.saved
	since=$(ct date '+%Y-%m-%d %H:%M:%S')
	ct sed -i 's/interval: 1s/interval: 2s/' /etc/pbx-agent/agent.yaml
	ct sh -c 'printf "listen:\n  http: 127.0.0.1:9740\n" >> /etc/pbx-agent/agent.yaml'
	ct systemctl reload pbx-agent.service
	eventually 10 sh -c "nsenter -t $container_pid -m -p -- systemctl show -P StatusText pbx-agent.service | grep -q 'restart to apply listen.http'"
	ct systemctl show -P StatusText pbx-agent.service | grep -q '^active; '
	[ "$(ct systemctl show -P MainPID pbx-agent.service)" = "$pid" ] || { echo "the reload restarted the daemon"; return 1; }
	ct journalctl -u pbx-agent.service --since "$since" --no-pager > "$work/reload.log"
	grep -q 'configuration reloaded.*applied=heartbeat.interval' "$work/reload.log"
	grep -q 'apply only after a restart.*keys=listen.http' "$work/reload.log"
	ct pbx-agent status | grep -q '^Restart to apply *listen.http'
	ct systemctl is-active pbx-agent.service
	# A broken file: the running configuration stays, and says why.
	ct sh -c 'printf "heartbeat: [\n" >> /etc/pbx-agent/agent.yaml'
	ct systemctl reload pbx-agent.service
	eventually 10 sh -c "nsenter -t $container_pid -m -p -- systemctl show -P StatusText pbx-agent.service | grep -q 'config not reloaded'"
	ct pbx-agent status | grep -q '^Config not reloaded'
	[ "$(ct systemctl show -P MainPID pbx-agent.service)" = "$pid" ]
	ct systemctl is-active pbx-agent.service
	ct cp /root/agent.yaml.saved /etc/pbx-agent/agent.yaml
	ct systemctl restart pbx-agent.service
	eventually 10 status_json
	! ct pbx-agent status | grep -q '^Restart to apply'
}

# watchdog_restarts_a_stuck_daemon: with the watchdog at 3 s (a drop-in,
# removed afterwards), the daemon stopped with SIGSTOP stops pinging;
# systemd records a watchdog timeout, kills it and starts a new one.
watchdog_restarts_a_stuck_daemon() {
	local dropin=/run/systemd/system/pbx-agent.service.d/e2e-watchdog.conf before after restarts
	ct mkdir -p "$(dirname "$dropin")"
	ct sh -c "printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\nRestartSec=1s\n' > $dropin"
	ct systemctl daemon-reload
	ct systemctl restart pbx-agent.service
	eventually 10 test "$(ct systemctl show -P WatchdogTimestampMonotonic pbx-agent.service)" != 0
	[ "$(ct systemctl show -P WatchdogUSec pbx-agent.service)" = 3s ]
	before=$(ct systemctl show -P MainPID pbx-agent.service)
	restarts=$(ct systemctl show -P NRestarts pbx-agent.service)
	ct kill -STOP "$before"
	eventually 30 sh -c "p=\$(nsenter -t $container_pid -m -p -- systemctl show -P MainPID pbx-agent.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $before ]"
	eventually 10 ct systemctl is-active --quiet pbx-agent.service
	after=$(ct systemctl show -P MainPID pbx-agent.service)
	ct journalctl -u pbx-agent.service --no-pager | grep -q 'Watchdog timeout (limit 3s)'
	[ "$(ct systemctl show -P NRestarts pbx-agent.service)" -gt "$restarts" ]
	eventually 10 status_json
	ct pbx-agent status --json | grep -q '"state": "active"'
	ct rm "$dropin"
	ct systemctl daemon-reload
	ct systemctl restart pbx-agent.service
	eventually 10 status_json
	echo "watchdog: pid $before stopped, pid $after started"
}

restart_after_kill() {
	local before after
	before=$(ct systemctl show -P MainPID pbx-agent.service)
	ct sh -c "kill -9 $before"
	eventually 20 sh -c "p=\$(nsenter -t $container_pid -m -p -- systemctl show -P MainPID pbx-agent.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $before ]"
	eventually 10 status_json
	ct pbx-agent status --json | grep -q '"uc-premium": {'
	ct pbx-agent status --json | grep -q '"state": "active"'
}

polkit_allows_only_the_helpers() {
	local sc="systemctl --no-ask-password"
	ct_as pbx-agent $sc start pbx-licence-stopped.target
	ct systemctl is-active pbx-licence-stopped.target
	ct_as pbx-agent $sc start pbx-licence-active.target
	ct systemctl is-active pbx-licence-active.target
	ct sh -c 'printf "[Service]\nType=oneshot\nExecStart=/bin/true\n" > /etc/systemd/system/e2e-other.service'
	ct systemctl daemon-reload
	if ct_as pbx-agent $sc start e2e-other.service 2> "$work/denied"; then echo "started another unit"; return 1; fi
	grep -qiE "access denied|not authorized|interactive authentication required" "$work/denied"
	if ct_as pbx-agent $sc start dbus.service 2>/dev/null; then echo "(re)started dbus"; return 1; fi
	if ct_as pbx-agent systemd-run --no-ask-password --unit=e2e-transient /bin/true 2> "$work/denied"; then
		echo "started a transient unit"; return 1
	fi
	if ct_as pbx-agent $sc daemon-reload 2> "$work/denied"; then echo "reloaded systemd"; return 1; fi
	if ct_as pbx-agent $sc start pbx-agent-sshd@0.service 2>/dev/null; then echo "started an out-of-range instance"; return 1; fi
	if ct_as pbx-agent $sc start pbx-agent-sshd-tunnel@0.service 2>/dev/null; then echo "started an out-of-range tunnel instance"; return 1; fi
	true
}

upgrade_keeps_licence() {
	ct dpkg -i /mnt/dist/pbx-agent-2.deb
	ct pbx-agent version | grep -q '+e2e'
	eventually 20 ct systemctl is-active --quiet pbx-agent.service
	eventually 10 status_json
	ct pbx-agent status --json | grep -q '"state": "active"'
	ct pbx-agent status --json | grep -q '"name": "e2e.example"'
}

purge_leaves_nothing() {
	ct dpkg --purge pbx-agent
	if ct sh -c 'ls -d /usr/lib/systemd/system/pbx-* /etc/systemd/system/*/pbx-* /etc/systemd/system/pbx-licence-* 2>/dev/null' |
		grep -v pbx-telephony-standin | grep .; then return 1; fi
	# Debian keeps system users: a reused id would own their files.
	for u in pbx-agent pbx-support; do
		ct getent passwd "$u" >/dev/null || { echo "purge deleted user $u"; return 1; }
		ct getent group "$u" >/dev/null || { echo "purge deleted group $u"; return 1; }
	done
	# Remove does not mask the units: nothing links to /dev/null.
	if ct sh -c 'ls -l /etc/systemd/system/pbx-* 2>/dev/null' | grep /dev/null; then echo "unit left masked"; return 1; fi
	for d in /var/lib/pbx-agent /etc/pbx-agent /usr/bin/pbx-agent; do
		if ct test -e "$d"; then echo "$d left"; return 1; fi
	done
	! ct systemctl cat pbx-agent.service >/dev/null 2>&1
}

# ── users, admission and telephony (pbx-agent's enforcement) ──────────────

# enforcement_configured: the agent counts users every second from the
# default SQLite database, and a stand-in telephony unit (sleep infinity) is
# listed in enforcement.stop_units and attached by the root helper.
enforcement_configured() {
	ct sh -c 'printf "[Unit]\nDescription=Stand-in for the PBX telephony\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n" > /etc/systemd/system/pbx-telephony-standin.service'
	ct systemctl daemon-reload
	ct systemctl enable --now pbx-telephony-standin.service
	ct sh -c 'cat >> /etc/pbx-agent/agent.yaml' <<YAML
users:
  interval: 1s
enforcement:
  stop_units: [pbx-telephony-standin.service]
YAML
	ct pbx-agent helper telephony-units | grep -q 'drop-ins written'
	ct systemctl show -P ConflictedBy pbx-telephony-standin.service | grep -q pbx-licence-stopped.target
	ct systemctl show -P WantedBy pbx-telephony-standin.service | grep -q pbx-licence-active.target
	ct pbx-agent helper telephony-units | grep -q 'unchanged'
	ct systemctl restart pbx-agent.service
	eventually 10 status_json
	ct systemctl is-active pbx-telephony-standin.service
}

# users_from_a_wal_database: a WMS stand-in (user wms) keeps a SQLite user
# database open in WAL mode in /var/lib/wms, group pbx-agent and setgid as
# the README asks; another process of wms adds users, which live in the -wal
# file only; the agent (pbx-agent, on its read-only view of the system)
# counts them all.
users_from_a_wal_database() {
	ct useradd --system --no-create-home --shell /usr/sbin/nologin wms
	ct install -d -o wms -g pbx-agent -m 2750 /var/lib/wms
	ct systemd-run --quiet --unit=wms-standin --uid=wms --gid=wms \
		/mnt/dist/seedusers -db /var/lib/wms/users.db -wal -hold uc-premium=3 pbx-basic=1
	eventually 10 ct test -e /var/lib/wms/users.db-shm
	ct stat -c '%n %U %G %a' /var/lib/wms/users.db /var/lib/wms/users.db-wal /var/lib/wms/users.db-shm > "$work/stat"
	if grep -v ' wms pbx-agent 640$' "$work/stat"; then echo "want the WMS's files wms:pbx-agent 0640"; return 1; fi
	eventually 15 status_has '^  UC-Premium +10 +3 +0'
	status_has '^  PBX-BASIC +3 +1 +0'
	ct setpriv --reuid=wms --regid=wms --clear-groups /mnt/dist/seedusers -db /var/lib/wms/users.db uc-premium=2
	eventually 15 status_has '^  UC-Premium +10 +5 +0'
	ct pbx-agent status | grep -q '^Users counted .*from sqlite /var/lib/wms/users.db'
	if ct pbx-agent status | grep '^Counting fails'; then return 1; fi
}

# admission_through_the_socket: the pbx-agent group asks on the socket (a
# dry run, then reserving); outsiders and the TCP listener may not.
admission_through_the_socket() {
	ct_as admin pbx-agent check uc-premium --count 5
	if ct_as admin pbx-agent check uc-premium --count 6 2> "$work/denied"; then echo "6 admitted, 5 free"; return 1; fi
	grep -q 'asked for 6 UC-Premium users but 5 are free: 10 licensed, 5 used, 0 reserved' "$work/denied"
	ct_as admin pbx-agent check uc-premium --count 5 --reserve | grep -q 'allowed and reserved'
	local rc=0
	ct_as admin pbx-agent check uc-premium --reserve 2> "$work/denied" || rc=$?
	[ "$rc" = 1 ] || { echo "denied: exit $rc, want 1"; return 1; }
	grep -q 'UC-Premium is full: 10 licensed, 5 used, 5 reserved' "$work/denied"
	ct pbx-agent status | grep -Eq '^  UC-Premium +10 +5 +5'
	ct pbx-agent audit | grep -q 'admission.denied'
	rc=0
	ct_as outsider pbx-agent check uc-premium 2> "$work/denied" || rc=$?
	[ "$rc" = 2 ] && grep -qi 'permission' "$work/denied" || { echo "outsider: exit $rc"; cat "$work/denied"; return 1; }
	local body='{"profile": "uc-premium"}'
	ct bash -c "exec 3<>/dev/tcp/127.0.0.1/9731 && printf 'POST /v1/admission HTTP/1.0\r\nHost: 127.0.0.1:9731\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\n\r\n%s' '$body' >&3 && cat <&3" > "$work/tcp"
	head -1 "$work/tcp" | grep -q ' 403 ' || { cat "$work/tcp"; return 1; }
	grep -q 'admission is asked on the unix socket' "$work/tcp"
	ct pbx-agent audit | grep -q 'admission.reserved'
	# The audit log is the socket's, for root and the group: not on TCP.
	ct bash -c "exec 3<>/dev/tcp/127.0.0.1/9731 && printf 'GET /v1/audit HTTP/1.0\r\nHost: 127.0.0.1:9731\r\n\r\n' >&3 && cat <&3" > "$work/tcp"
	head -1 "$work/tcp" | grep -q ' 403 ' || { cat "$work/tcp"; return 1; }
	# A DNS-rebinding page's Host is refused on reads too.
	ct bash -c "exec 3<>/dev/tcp/127.0.0.1/9731 && printf 'GET /v1/status HTTP/1.0\r\nHost: evil.example:9731\r\n\r\n' >&3 && cat <&3" > "$work/tcp"
	head -1 "$work/tcp" | grep -q ' 403 ' || { cat "$work/tcp"; return 1; }
}

inactive() { ! ct systemctl is-active --quiet "$1"; }
status_has() { ct pbx-agent status | grep -Eq "$1"; }
status_exit_is() { local rc; rc=$(status_exit); [ "$rc" = "$1" ] || { echo "pbx-agent status: exit $rc, want $1"; return 1; }; }
state_is() { ct pbx-agent status --json | grep -q "\"state\": \"$1\""; }

# licence_zero_stops_telephony: every licence to zero, the portal's clock 6
# days on: the agent, as pbx-agent through polkit, starts the stopped
# target, which stops the stand-in.
licence_zero_stops_telephony() {
	# The portal refuses decreases on a month's last day.
	if [ "$(date -u -d "$(sim clock | cut -c1-10) + 1 day" +%d)" = 01 ]; then sim clock advance 1d; fi
	sim pbx licenses e2e.example uc-premium=0 pbx-basic=0
	eventually 15 state_is stopping
	status_exit_is 12
	ct systemctl is-active pbx-telephony-standin.service
	sim clock advance 6d
	eventually 30 inactive pbx-telephony-standin.service
	ct systemctl is-active pbx-licence-stopped.target
	inactive pbx-licence-active.target
	ct pbx-agent status --json | grep -q '"state": "stopped"'
	status_exit_is 13
	ct journalctl -u pbx-agent.service --no-pager | grep -q 'telephony stopped by the licence'
	ct pbx-agent audit | grep -Eq 'telephony +action=stop'
}

# reboot_container reboots the container (in the rig's own shell: the
# steps run in subshells) and finds its new PID 1.
reboot_container() {
	local before=$container_pid
	log "rebooting the container"
	ct systemctl reboot >/dev/null 2>&1 || true
	for _ in $(seq 600); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$nspawn_pid" 2>/dev/null && die "the container did not shut down for its reboot"
	wait "$nspawn_pid" 2>/dev/null
	boot
	[ "$container_pid" != "$before" ] || die "no new PID 1 after the reboot"
}

# telephony_stays_stopped_after_reboot: at boot the active target starts the
# stand-in; the agent, seeing its state still stopped, stops it again.
telephony_stays_stopped_after_reboot() {
	eventually 30 status_json
	ct pbx-agent status --json | grep -q '"state": "stopped"'
	eventually 30 inactive pbx-telephony-standin.service
	ct systemctl is-active pbx-licence-stopped.target
	ct journalctl -b -u pbx-agent.service --no-pager | grep -q 'telephony stopped by the licence'
	# It did come up with the boot, and was stopped by the agent.
	ct journalctl -b -u pbx-telephony-standin.service --no-pager > "$work/standin.log"
	grep -q 'Started pbx-telephony-standin.service' "$work/standin.log" && grep -q 'Stopped pbx-telephony-standin.service' "$work/standin.log" ||
		{ cat "$work/standin.log"; return 1; }
	# The WMS starts again with the appliance.
	ct systemd-run --quiet --unit=wms-standin --uid=wms --gid=wms /mnt/dist/seedusers -db /var/lib/wms/users.db -wal -hold
}

# slow_telephony_stop: a telephony unit bound to the licence targets whose
# stop takes 120 s, past WatchdogSec=90s. The licence to zero and 6 days on:
# the agent's stop waits the whole 120 s on systemd, and meanwhile the daemon
# keeps its PID, answers its status and systemd records no watchdog timeout.
# The licence is added back after, for the steps that follow.
slow_telephony_stop() {
	local unit=pbx-telephony-slow.service bind=/etc/systemd/system/pbx-licence-stopped.target.d/e2e-slow.conf pid restarts since end
	# Bound as `pbx-agent helper telephony-units` binds a unit: the stopped
	# target conflicts with it and starts after it stopped.
	ct mkdir -p "$(dirname "$bind")"
	ct sh -c "printf '[Unit]\nConflicts=$unit\nAfter=$unit\n' > $bind"
	ct sh -c "printf '[Unit]\nDescription=A telephony unit slow to stop\n[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep 120\nTimeoutStopSec=180\n' > /etc/systemd/system/$unit"
	ct systemctl daemon-reload
	ct systemctl add-wants pbx-licence-active.target "$unit"
	ct systemctl start "$unit"
	[ "$(ct systemctl show -P WatchdogUSec pbx-agent.service)" = "1min 30s" ]
	pid=$(ct systemctl show -P MainPID pbx-agent.service)
	restarts=$(ct systemctl show -P NRestarts pbx-agent.service)
	since=$(ct date +%s)
	if [ "$(date -u -d "$(sim clock | cut -c1-10) + 1 day" +%d)" = 01 ]; then sim clock advance 1d; fi
	sim pbx licenses e2e.example uc-premium=0 pbx-basic=0
	eventually 15 state_is stopping
	status_exit_is 12
	sim clock advance 6d
	eventually 30 state_is stopped
	eventually 30 sh -c "[ \"\$(nsenter -t $container_pid -m -p -- systemctl show -P ActiveState $unit)\" = deactivating ]"
	# Through the 120 s stop and 10 s after: the same PID, the status answered.
	end=$(($(date +%s) + 130))
	while [ "$(date +%s)" -lt "$end" ]; do
		[ "$(ct systemctl show -P MainPID pbx-agent.service)" = "$pid" ] || { echo "the daemon's PID changed during the slow stop"; return 1; }
		ct timeout 5 pbx-agent status --json | grep -q '"state": "stopped"'
		sleep 5
	done
	eventually 60 inactive "$unit"
	ct systemctl is-active pbx-licence-stopped.target
	[ "$(ct systemctl show -P MainPID pbx-agent.service)" = "$pid" ]
	[ "$(ct systemctl show -P NRestarts pbx-agent.service)" = "$restarts" ]
	if ct journalctl -u pbx-agent.service --since "@$since" --no-pager | grep -i 'watchdog timeout'; then return 1; fi
	if ct journalctl -u pbx-agent.service --since "@$since" --no-pager | grep -q 'not answered the watchdog'; then
		echo "a loop stopped answering the watchdog during the slow stop"; return 1
	fi
	ct pbx-agent audit | grep -Eq 'telephony +action=stop'
	# Back as it was: the unit gone, the licence active, the stand-in running.
	ct systemctl disable "$unit" 2>/dev/null || true
	ct rm -f "/etc/systemd/system/$unit" "/etc/systemd/system/pbx-licence-active.target.wants/$unit" "$bind"
	ct systemctl daemon-reload
	sim pbx licenses e2e.example uc-premium=1
	eventually 30 state_is active
	eventually 30 ct systemctl is-active --quiet pbx-telephony-standin.service
	echo "slow telephony stop: pid $pid kept through a 120 s stop under WatchdogSec=90s"
}

# licence_back_restarts_telephony: one licence added back: active again, the
# stand-in runs; 5 UC-Premium users for 1 licence is over-use, reported to
# the status, the portal and the audit log, and it blocks new UC-Premium users.
licence_back_restarts_telephony() {
	sim pbx licenses e2e.example uc-premium=1
	eventually 30 ct systemctl is-active --quiet pbx-telephony-standin.service
	ct systemctl is-active pbx-licence-active.target
	inactive pbx-licence-stopped.target
	ct pbx-agent status --json | grep -q '"state": "active"'
	eventually 15 status_has '^  UC-Premium +1 +5 +0 +4'
	eventually 15 sim_shows 'over-use.*uc-premium=4'
	ct pbx-agent audit | grep -q 'overuse'
	if ct_as admin pbx-agent check uc-premium 2> "$work/denied"; then echo "admitted while over-used"; return 1; fi
	grep -q 'UC-Premium is over-used: 5 users for 1 licence, 4 of them without a licence' "$work/denied"
}

# ── support SSH pushed by the portal (pbx-agent-sshd@<ttl>.service) ────────

port_open() { ct bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222' 2>/dev/null; }
support_ssh() {
	ct ssh -i /root/support_key -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 pbx-support@127.0.0.1 "$@"
}

# ssh_open_from_portal: the portal's ssh-open starts the unit over D-Bus
# (polkit), sshd listens on 2222, the pushed key logs in as pbx-support, and
# the host key fingerprints reported to the portal are the host's.
ssh_open_from_portal() {
	ct ssh-keygen -q -t ed25519 -N "" -C support@e2e -f /root/support_key
	ct cat /root/support_key.pub > "$work/support.pub"
	ct getent shadow pbx-support | cut -d: -f1,2
	ct id pbx-support
	sim command e2e.example ssh-open --ttl 600s --pubkey "$work/support.pub" --wait 30s > "$work/ssh-open.json"
	grep -q '"state": "done"' "$work/ssh-open.json" || { cat "$work/ssh-open.json"; return 1; }
	eventually 10 port_open
	ct systemctl is-active --quiet 'pbx-agent-sshd@600.service'
	support_ssh id -un > "$work/ssh-id" || {
		ct journalctl -u 'pbx-agent-sshd@*' --no-pager | tail -20
		ct ls -la /run/pbx-agent-sshd /run/pbx-agent/ssh
		ct systemctl cat pbx-agent-sshd@600.service | grep -n 'install\|chgrp\|Runtime'
		return 1
	}
	grep -qx pbx-support "$work/ssh-id"
	fp=$(ct ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk '{print $2}')
	grep -q "$fp" "$work/ssh-open.json" || { echo "host key $fp not reported"; cat "$work/ssh-open.json"; return 1; }
	ct pbx-agent ssh status | grep -q 'open on port 2222'
	# Behind the site's NAT, the port serves no one outside.
	listeners 2222 | grep -qx 00000000 || { echo "sshd on 2222 listens on: $(listeners 2222)"; return 1; }
	refused_from_host 2222
	# The copy sshd reads is root's, readable by pbx-support alone.
	[ "$(ct stat -c '%U %G %a' /run/pbx-agent-sshd/authorized_keys)" = "root pbx-support 640" ]
}

# ssh_close_ends_session: ssh-close from the portal stops the unit, and
# with it a session that was open (UsePAM=no keeps it in the unit's cgroup).
ssh_close_ends_session() {
	mark() { echo "$(date +%T.%N | cut -c1-12) $*"; }
	mark "session starting"
	nsenter -t "$container_pid" -m -u -i -n -p -C -- timeout 120 ssh -i /root/support_key -p 2222 -o BatchMode=yes \
		-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null pbx-support@127.0.0.1 sleep 100 &
	local session=$!
	eventually 10 ct pgrep -u pbx-support -x sleep
	mark "session open; ssh-close queued"
	sim command e2e.example ssh-close --wait 30s | grep -q '"state": "done"'
	mark "ssh-close reported done"
	eventually 10 sh -c "! nsenter -t $container_pid -m -p -- pgrep -u pbx-support -x sleep"
	mark "session gone"
	if port_open; then echo "port 2222 still open"; return 1; fi
	wait "$session" 2>/dev/null || true
	mark "client exited"
	ct pbx-agent ssh status | grep -q 'SSH: closed'
}

# ssh_ttl_with_agent_dead: a 5 s access closes at its TTL though the agent
# was killed right after opening it; back up, the agent reports it closed.
ssh_ttl_with_agent_dead() {
	sim command e2e.example ssh-open --ttl 5s --pubkey "$work/support.pub" --wait 30s | grep -q '"state": "done"'
	eventually 10 port_open
	ct systemctl kill --signal=SIGKILL pbx-agent.service
	ct systemctl stop pbx-agent.service
	eventually 20 sh -c "! nsenter -t $container_pid -m -u -i -n -p -- bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222' 2>/dev/null"
	inactive 'pbx-agent-sshd@5.service'
	ct systemctl start pbx-agent.service
	eventually 20 ct pbx-agent ssh status
	eventually 40 sh -c "nsenter -t $container_pid -m -u -i -n -p -C -- pbx-agent ssh status | grep -q 'SSH: closed'"
}

# ── support SSH through the portal's tunnel (pbx-agent-sshd-tunnel@<ttl>) ──

# tunnel_ssh runs ssh on the host as support does: through the portal's
# relay (pbx-portal-sim tunnel as its ProxyCommand), with the key the portal
# pushed, and knowing the appliance's host key. The caller gives the
# destination, pbx-support@e2e.example.
tunnel_ssh() {
	ssh -F /dev/null -i "$work/tunnel_key" -o IdentitiesOnly=yes -o BatchMode=yes \
		-o ProxyCommand="$(printf '%q ' "${sim_argv[@]}") tunnel e2e.example" \
		-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" -o ConnectTimeout=10 "$@"
}

# tunnel_open TTL queues a tunnelled ssh-open with support's key, waits for
# the agent's result and prints the command's id.
tunnel_open() {
	sim command e2e.example ssh-open --tunnel --ttl "$1" --pubkey "$work/tunnel_key.pub" --wait 30s > "$work/tunnel-open.json" ||
		{ cat "$work/tunnel-open.json"; return 1; }
	grep -q '"state": "done"' "$work/tunnel-open.json" || { cat "$work/tunnel-open.json"; return 1; }
	sed -n 's/^  "id": "\(cmd-[^"]*\)",$/\1/p' "$work/tunnel-open.json"
}
tunnel_connected() { ct pbx-agent status --json | grep -q '"connected": true'; }
tunnel_sessions() { ct pbx-agent status --json | grep -q "\"sessions\": $1,"; }
support_shells() { ct pgrep -u pbx-support -x sleep; }
no_support_shells() { ! ct pgrep -u pbx-support -x sleep; }
gone() { ! kill -0 "$1" 2>/dev/null; }
audit_has() { ct pbx-agent audit | grep -Eq "$1"; }

# listeners PORT prints the addresses the container listens on at PORT, in
# the kernel's hex from its /proc/net/tcp and tcp6 (127.0.0.1 is 0100007F).
listeners() {
	ct cat /proc/net/tcp /proc/net/tcp6 |
		awk -v port="$(printf ':%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == port { print substr($2, 1, length($2) - 5) }'
}

# tunnel_from_portal: the relay refuses while no tunnel is open; the
# portal's ssh-open --tunnel makes the agent start the loopback sshd's unit
# over D-Bus (polkit) and dial the portal; only 127.0.0.1:222 listens for
# it. Support logs in from the host through the portal's relay with the
# pushed key, and meets the appliance's host key, while the host cannot
# connect to the container on 222 or 2222; ssh -W is refused by the
# unit's sshd. ssh status, the status JSON and the audit log show the
# tunnel and its sessions.
tunnel_from_portal() {
	local id
	ssh-keygen -q -t ed25519 -N "" -C support@e2e -f "$work/tunnel_key"
	echo "e2e.example $(ct cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)" > "$work/known_hosts"
	if sim tunnel e2e.example < /dev/null 2> "$work/refused"; then echo "the relay ran with no tunnel open"; return 1; fi
	grep -q 'no tunnel is open' "$work/refused"
	id=$(tunnel_open 600s)
	ct systemctl is-active --quiet pbx-agent-sshd-tunnel@600.service
	eventually 20 tunnel_connected
	[ "$(listeners 222)" = 0100007F ] || { echo "port 222 listens on: $(listeners 222)"; return 1; }
	[ -z "$(listeners 2222)" ] || { echo "port 2222 listens in tunnel mode: $(listeners 2222)"; return 1; }
	# Support logs in through the portal while the host cannot connect in.
	tunnel_ssh pbx-support@e2e.example 'id -un; hostname' > "$work/tunnel-id"
	refused_from_host 222
	refused_from_host 2222
	[ "$(cat "$work/tunnel-id")" = "$(printf 'pbx-support\npbx-e2e')" ] || { cat "$work/tunnel-id"; return 1; }
	# The unit's sshd forwards nothing: not to the agent's own HTTP port.
	if tunnel_ssh -W 127.0.0.1:9731 pbx-support@e2e.example < /dev/null > "$work/forward" 2>&1; then
		echo "ssh -W reached 127.0.0.1:9731 through the tunnel"; cat "$work/forward"; return 1
	fi
	grep -q 'forwarding failed' "$work/forward" || { cat "$work/forward"; return 1; }
	ct pbx-agent status --json > "$work/status.json"
	grep -q '"tunnel": {' "$work/status.json" && grep -q "\"command\": \"$id\"" "$work/status.json" ||
		{ cat "$work/status.json"; return 1; }
	eventually 10 tunnel_sessions 0
	ct pbx-agent ssh status > "$work/ssh-status"
	grep -q "^SSH: open through the portal's tunnel (sshd on 127.0.0.1:222), until " "$work/ssh-status" &&
		grep -q '^  tunnel connected · 0 sessions open, 2 in all' "$work/ssh-status" || { cat "$work/ssh-status"; return 1; }
	audit_has "ssh +action=open command=$id port=222 tunnel=true"
	eventually 10 audit_has "ssh.session +action=start command=$id"
	eventually 10 audit_has "ssh.session +action=end bytes_in=[1-9][0-9]* bytes_out=[1-9][0-9]* command=$id"
}

# tunnel_agent_killed: a session is open through the tunnel when SIGKILL
# takes the agent. The relay dies with it, so the session ends; systemd
# restarts the agent, which closes the loopback sshd left behind, ending
# what ran in it; the relay refuses until the portal opens a new tunnel.
tunnel_agent_killed() {
	local id session pid
	id=$(tunnel_open 600s)
	eventually 20 tunnel_connected
	tunnel_ssh pbx-support@e2e.example 'exec sleep 300' &
	session=$!
	eventually 20 support_shells
	eventually 10 tunnel_sessions 1
	pid=$(ct systemctl show -P MainPID pbx-agent.service)
	ct systemctl kill --signal=SIGKILL pbx-agent.service
	eventually 10 gone "$session"
	eventually 30 sh -c "p=\$(nsenter -t $container_pid -m -p -- systemctl show -P MainPID pbx-agent.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $pid ]"
	eventually 20 inactive pbx-agent-sshd-tunnel@600.service
	eventually 10 no_support_shells
	eventually 10 sh -c "nsenter -t $container_pid -m -u -i -n -p -C -- pbx-agent ssh status | grep -q 'SSH: closed'"
	audit_has 'ssh +action=close .*why="its tunnel ended with the agent that opened it"'
	if sim tunnel e2e.example < /dev/null 2>/dev/null; then echo "the relay still reaches the appliance"; return 1; fi
	echo "session through $id ended with agent $pid; the restarted agent closed its sshd"
}

# tunnel_ttl_with_agent_down: the agent killed and kept down while a
# session is open: the session's client goes with the relay, but its shell
# runs on in the loopback sshd's unit until the TTL ends the unit, with no
# agent to stop it (systemd runs no stop job: its journal has no
# "Stopping"); started again, the agent reports SSH closed.
tunnel_ttl_with_agent_down() {
	local unit=pbx-agent-sshd-tunnel@12.service session
	tunnel_open 12s > /dev/null
	eventually 20 tunnel_connected
	tunnel_ssh pbx-support@e2e.example 'exec sleep 300' &
	session=$!
	eventually 20 support_shells
	ct systemctl kill --signal=SIGKILL pbx-agent.service
	ct systemctl stop pbx-agent.service
	eventually 10 gone "$session"
	ct systemctl is-active --quiet "$unit" || { echo "$unit ended before its TTL"; return 1; }
	support_shells
	eventually 30 inactive "$unit"
	no_support_shells
	ct journalctl -u "$unit" --no-pager > "$work/tunnel-unit.log"
	if grep -q "Stopping $unit" "$work/tunnel-unit.log"; then echo "$unit was stopped, not ended by its TTL"; cat "$work/tunnel-unit.log"; return 1; fi
	grep -q "$unit: Deactivated successfully" "$work/tunnel-unit.log"
	ct systemctl start pbx-agent.service
	eventually 20 sh -c "nsenter -t $container_pid -m -u -i -n -p -C -- pbx-agent ssh status | grep -q 'SSH: closed'"
}

# ── WMS upgrades (the root helper unit, started as pbx-agent through polkit) ──

# wms_from_a_local_repository: the repository inside the container, its
# keyring and the upgrade section in the configuration; v1 installed.
wms_from_a_local_repository() {
	ct mkdir -p /srv/wms-repo
	ct cp -r /mnt/dist/wms-repo/rel70 /srv/wms-repo/
	ct install -D -m 0644 /mnt/dist/wms-archive-keyring.gpg /etc/apt/keyrings/wms-archive-keyring.gpg
	# The backup hook takes a few seconds, so that the agent can be
	# restarted in the middle of an upgrade.
	ct sh -c 'cat >> /etc/pbx-agent/agent.yaml' <<YAML
upgrade:
  repo_url: file:///srv/wms-repo/{repository}
  repo_suite: ./
  repo_components: []
  backup_hook: [/bin/sh, -c, 'echo "backup before \$WMS_VERSION_FROM -> \$WMS_VERSION_TO"; sleep 3']
  health_command: [/bin/grep, -qx, ok, /usr/share/wms/health]
  health_timeout: 5s
YAML
	ct systemctl restart pbx-agent.service
	eventually 10 status_json
	ct dpkg -i "/mnt/dist/wms-repo/rel70/wms_${wms_v1}_all.deb"
	ct dpkg-query -W -f '${Version}' wms | grep -qx "$wms_v1"
}

wms_status() { ct dpkg-query -W -f '${db:Status-Abbrev}${Version}' wms | tr -s ' '; }
wms_result() { ct_as pbx-agent cat "/var/lib/pbx-agent-wms/$1.json"; }
wms_journal() { ct journalctl -u "pbx-agent-wms-upgrade@$1.service" --no-pager | tail -40; }
# wms_command VERSION queues the upgrade on the portal, its window open
# now, and prints the command's id; wms_command_result ID waits for the
# result the agent reports.
wms_command() { sim command e2e.example upgrade --version "$1" --repo rel70 --window-start now --window-end now+1h; }
# wms_command_result prints a command's result once it has one; `--wait`
# exits 1 for a command that failed on the appliance, which the caller
# judges from the result, and 2 when there is none in time.
wms_command_result() {
	local rc=0
	sim command show e2e.example "$1" --wait 180s || rc=$?
	[ "$rc" -le 1 ]
}

# wms_good_upgrade: the portal's wms.upgrade makes the agent start the unit
# over D-Bus (polkit); the agent is killed during the upgrade, which goes
# on; the restarted agent finds the outcome and reports it; v2 ends
# installed, healthy and held.
wms_good_upgrade() {
	local id
	id=$(wms_command "$wms_v2")
	eventually 30 sh -c "nsenter -t $container_pid -m -p -- journalctl -u pbx-agent-wms-upgrade@$wms_v2.service --no-pager | grep -q 'backup before'"
	ct systemctl is-active --quiet "pbx-agent-wms-upgrade@$wms_v2.service" || ct systemctl show -P ActiveState "pbx-agent-wms-upgrade@$wms_v2.service" | grep -qx activating
	local before=$(ct systemctl show -P MainPID pbx-agent.service)
	ct sh -c "kill -9 $before"
	wms_command_result "$id" > "$work/wms-command"
	grep -q '"state": "done"' "$work/wms-command" || { cat "$work/wms-command"; wms_journal "$wms_v2"; return 1; }
	grep -q '"outcome": "upgraded"' "$work/wms-command"
	[ "$(ct systemctl show -P MainPID pbx-agent.service)" != "$before" ] || { echo "the agent was not restarted"; return 1; }
	ct systemctl show -P Result "pbx-agent-wms-upgrade@$wms_v2.service" | grep -qx success
	[ "$(wms_status)" = "hi $wms_v2" ] || { echo "dpkg-query: $(wms_status)"; wms_journal "$wms_v2"; return 1; }
	wms_result "$wms_v2" > "$work/wms-result"
	grep -q '"outcome": "upgraded"' "$work/wms-result"
	grep -q "\"previous\": \"$wms_v1\"" "$work/wms-result"
	grep -q '"held": true' "$work/wms-result"
	grep -q "\"command_id\": \"$id\"" "$work/wms-result"
	ct stat -c '%U %G %a' /var/lib/pbx-agent-wms "/var/lib/pbx-agent-wms/$wms_v2.json" | tr '\n' ' ' | grep -q '^root pbx-agent 750 root pbx-agent 640 $'
	ct grep -q "Signed-By: /etc/apt/keyrings/wms-archive-keyring.gpg" /etc/apt/sources.list.d/pbx-agent-wms.sources
	eventually 20 sh -c "nsenter -t $container_pid -m -u -i -n -p -C -- pbx-agent status --json | grep -q '\"version\": \"$wms_v2\"'"
}

# wms_bad_upgrade_rolled_back: the portal's upgrade to v3 fails its health
# check; the helper puts v2 back from the kept .deb and holds it; the agent
# reports the command failed, rolled back.
wms_bad_upgrade_rolled_back() {
	local id
	id=$(wms_command "$wms_v3")
	wms_command_result "$id" > "$work/wms-command"
	grep -q '"state": "failed"' "$work/wms-command" || { cat "$work/wms-command"; wms_journal "$wms_v3"; return 1; }
	grep -q '"outcome": "rolled_back"' "$work/wms-command"
	[ "$(wms_status)" = "hi $wms_v2" ] || { echo "dpkg-query: $(wms_status)"; wms_journal "$wms_v3"; return 1; }
	wms_result "$wms_v3" > "$work/wms-result"
	grep -q '"rolled_back": true' "$work/wms-result"
	grep -q "\"installed\": \"$wms_v2\"" "$work/wms-result"
	grep -q "unhealthy after the upgrade to $wms_v3" "$work/wms-result"
	ct journalctl -u "pbx-agent-wms-upgrade@$wms_v3.service" --no-pager | grep -q "rolled back to wms $wms_v2"
	# A version outside the format is no unit pbx-agent may start.
	if ct_as pbx-agent systemctl --no-ask-password start "pbx-agent-wms-upgrade@7.02.x.service" 2>/dev/null; then
		echo "started a malformed instance"; return 1
	fi
}

# wms_purged: purge removed the helper's results, its kept .deb and its apt
# source; the WMS itself stays, held.
wms_purged() {
	if ct test -e /var/lib/pbx-agent-wms; then echo "/var/lib/pbx-agent-wms left"; return 1; fi
	if ct test -e /etc/apt/sources.list.d/pbx-agent-wms.sources; then echo "apt source left"; return 1; fi
	[ "$(wms_status)" = "hi $wms_v2" ] || { echo "dpkg-query: $(wms_status)"; return 1; }
}

# ── an air-gapped PBX: no network at all, files carried by hand ──────────

# The admin's USB stick: a folder of the container that the host writes and
# reads through the container's root file system, the only way in or out
# once the network is cut.
usb=/root/usb
# carry_in FILE NAME puts the host's FILE on the stick as NAME; carry_out
# NAME FILE takes NAME off it to the host's FILE.
carry_in() { install -D -m 0600 "$1" "$work/root$usb/$2"; }
carry_out() { cp "$work/root$usb/$1" "$2"; }

# portal_reachable: a TCP connection from inside the container to the
# portal's port opens.
portal_reachable() { ct bash -c "exec 3<>/dev/tcp/$host_ip/${portal_addr##*:}"; }

# json_field NAME FILE prints the first value of "NAME" in a status
# document (a number, or a string without its quotes).
json_field() { sed -n "s/^ *\"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$2" | head -1; }

# air_gapped_cut_off: the portal, reachable from inside a moment before, is
# not once the container's one link is down and its address gone (set from
# the host: the container has no ip tool); no route is left but loopback's.
# The agent gets the configuration of an air-gapped PBX (no portal.url) and
# a fresh state, and systemd starts it again: unactivated, it makes no
# heartbeat.
air_gapped_cut_off() {
	portal_reachable || { echo "the portal was not reachable from the container before the cut"; return 1; }
	nsenter -t "$container_pid" -n ip addr flush dev host0
	nsenter -t "$container_pid" -n ip link set host0 down
	nsenter -t "$container_pid" -n ip route show table all > "$work/routes"
	if grep -v ' dev lo ' "$work/routes"; then echo "routes left beside loopback's"; return 1; fi
	nsenter -t "$container_pid" -n ip -br addr > "$work/addrs"
	if grep -v '^lo ' "$work/addrs" | grep -E '[0-9a-f:.]+/[0-9]+'; then echo "addresses left beside loopback's"; return 1; fi
	if portal_reachable 2> "$work/unreachable"; then echo "the container still reaches the portal"; return 1; fi
	grep -q 'Network is unreachable' "$work/unreachable" || { cat "$work/unreachable"; return 1; }
	ct systemctl stop pbx-agent.service
	ct find /var/lib/pbx-agent -mindepth 1 -delete
	ct sed -i '/^  url: /d' /etc/pbx-agent/agent.yaml
	if ct grep -n '^  url:' /etc/pbx-agent/agent.yaml; then echo "portal.url left in the configuration"; return 1; fi
	ct systemctl start pbx-agent.service
	eventually 10 status_json
	status_exit_is 10 # unactivated
	status_json > "$work/status.json"
	if grep -q '"last_success"\|"mode"' "$work/status.json"; then cat "$work/status.json"; return 1; fi
}

# air_gapped_activated_by_files: a new PBX on the portal; its key carried
# in; the daemon writes the activation request (0600: it holds the key),
# carried out; the portal answers it with a licence file, carried in and
# installed. The PBX is active and air-gapped, telephony running. With no
# portal, a refresh says to renew by file, and no heartbeat fails: none is
# logged as failing nor counted, so no alert fires for an air-gapped PBX.
air_gapped_activated_by_files() {
	local since rc=0
	since=$(ct date +%s)
	sim pbx create --name air.example --model WPBX-VM --term monthly --users uc-premium=10 --users pbx-basic=3 > "$work/air-key"
	ct install -d -m 0700 "$usb"
	carry_in "$work/air-key" key.txt
	ct pbx-agent activate --offline --key-file "$usb/key.txt" --out "$usb/request.txt"
	[ "$(ct stat -c '%U %a' "$usb/request.txt")" = "root 600" ] || { ct stat "$usb/request.txt"; return 1; }
	carry_out request.txt "$work/air-request"
	sim pbx offline-activate air.example < "$work/air-request" > "$work/air-licence-1"
	carry_in "$work/air-licence-1" licence-1.txt
	ct pbx-agent activate --licence-file "$usb/licence-1.txt" > "$work/installed"
	grep -q '^Installed the licence file of PBX air.example (pbx-[^)]*): active; valid until ' "$work/installed" || { cat "$work/installed"; return 1; }
	ct pbx-agent status --json > "$work/status.json"
	grep -q '"state": "active"' "$work/status.json" && grep -q '"mode": "air-gapped"' "$work/status.json" &&
		grep -q '"horizon": "' "$work/status.json" || { cat "$work/status.json"; return 1; }
	status_exit_is 0
	ct pbx-agent status | grep -q '^Air-gapped *licence file valid until '
	sim pbx show air.example > "$work/air-show"
	grep -q '^status: *bound$' "$work/air-show" && grep -q '^device: *dev-[^,]*, WPBX-VM, bound ' "$work/air-show" || { cat "$work/air-show"; return 1; }
	ct systemctl is-active pbx-telephony-standin.service
	ct pbx-agent refresh > "$work/refresh" 2>&1 || rc=$?
	[ "$rc" = 4 ] && grep -q 'renew it by file (pbx-agent report --offline)' "$work/refresh" ||
		{ echo "refresh: exit $rc; want 4, saying to renew by file"; cat "$work/refresh"; return 1; }
	if ct journalctl -u pbx-agent.service --since "@$since" --no-pager | grep 'heartbeat failed'; then return 1; fi
	ct bash -c 'exec 3<>/dev/tcp/127.0.0.1/9731 && printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' > "$work/metrics"
	grep -q '^pbx_license_air_gapped 1$' "$work/metrics"
	grep '^pbx_agent_heartbeats_total{' "$work/metrics" > "$work/heartbeats"
	if grep -v '} 0$' "$work/heartbeats"; then echo "heartbeats counted"; return 1; fi
}

# air_gapped_renewed_by_files: two days on, the portal adds licences; the
# usage report, carried out, brings the peak of users counted to the portal;
# its answer, carried in, moves the revision and the horizon. The first
# licence file, installed again, is refused as older, and changes nothing.
air_gapped_renewed_by_files() {
	local rev1 rev2 horizon1 horizon2 rc=0
	eventually 15 status_has '^  UC-Premium +10 +5 '
	ct pbx-agent status --json > "$work/status.json"
	rev1=$(json_field revision "$work/status.json") horizon1=$(json_field horizon "$work/status.json")
	sim clock advance 2d
	sim pbx licenses air.example uc-premium=12
	ct pbx-agent report --offline --out "$usb/report.txt"
	carry_out report.txt "$work/air-report"
	sim pbx offline-renew air.example < "$work/air-report" > "$work/air-licence-2"
	sim pbx show air.example --json | tr -d ' \n' | grep -q '"last_peak":{[^}]*"uc-premium":5'
	carry_in "$work/air-licence-2" licence-2.txt
	ct pbx-agent activate --licence-file "$usb/licence-2.txt"
	ct pbx-agent status --json > "$work/status.json"
	rev2=$(json_field revision "$work/status.json") horizon2=$(json_field horizon "$work/status.json")
	[ "$rev2" -gt "$rev1" ] || { echo "revision $rev1 then $rev2"; return 1; }
	[ "$(date -d "$horizon2" +%s)" -gt "$(date -d "$horizon1" +%s)" ] || { echo "horizon $horizon1 then $horizon2"; return 1; }
	grep -q '"mode": "air-gapped"' "$work/status.json"
	status_has '^  UC-Premium +12 +5 '
	ct pbx-agent activate --licence-file "$usb/licence-1.txt" 2> "$work/refused" || rc=$?
	[ "$rc" = 2 ] || { echo "the older file: exit $rc, want 2"; cat "$work/refused"; return 1; }
	grep -q "this file is older than the one installed (revision $rev1 < $rev2)" "$work/refused" || { cat "$work/refused"; return 1; }
	ct pbx-agent status --json > "$work/status.json"
	[ "$(json_field revision "$work/status.json")" = "$rev2" ] || { echo "the refused file changed the revision"; return 1; }
	echo "revision $rev1 -> $rev2, horizon $horizon1 -> $horizon2"
}

# ── main ───────────────────────────────────────────────────────────────────

require
build
make_rootfs
make_network
make_portal_cert
start_portal
mount_root
boot
step "install the .deb; the service starts" install_first
step "systemd-analyze verify on the installed units" verify_units
step "config check: the installed file OK; two typos both listed" config_check
step "active as pbx-agent, watchdog armed, licence-active target up" service_hardened_and_watched
step "a release build: the portal's key is its embedded root, none configured" trust_is_embedded
step "activate with a key from the portal on the host" activate
step "network: the portal reached over HTTPS with the pinned CA; the host cannot connect in" network_of_its_own
step "metrics: served under the hardened unit; rules installed" metrics_under_the_unit
step "journal: levels as priorities (journalctl -p err, -p warning), attributes as fields" journal_priorities
step "status: root and the pbx-agent group read, others refused" status_by_group
step "writes: refused to the pbx-agent group and to outsiders; root writes" writes_refused_to_readers
step "reload: a new heartbeat interval applied live, listen.http needs a restart" reload_applies_live_keys
step "kill -9: systemd restarts the daemon, the licence intact" restart_after_kill
step "SIGSTOP: the watchdog times out and systemd restarts the daemon" watchdog_restarts_a_stuck_daemon
step "polkit: the helper targets only; no other unit, transient or reload" polkit_allows_only_the_helpers
step "WMS: a signed local repository, the upgrade configuration, v1 installed" wms_from_a_local_repository
step "WMS: a good upgrade pushed by the portal; the agent killed meanwhile" wms_good_upgrade
step "WMS: a bad upgrade pushed by the portal, rolled back from the kept .deb and held" wms_bad_upgrade_rolled_back
step "enforcement: users counted every second; a stand-in telephony unit attached" enforcement_configured
step "users: a WAL database written by another user, read on a read-only view" users_from_a_wal_database
step "admission: the group asks on the socket; outsiders and TCP refused" admission_through_the_socket
step "ssh-open from the portal: sshd on 2222, the pushed key logs in; the host cannot reach it" ssh_open_from_portal
step "ssh-close from the portal ends an open session" ssh_close_ends_session
step "the TTL closes SSH with the agent killed in between" ssh_ttl_with_agent_dead
step "tunnel: ssh-open --tunnel, sshd on 127.0.0.1:222 alone; support logs in from the host through the portal" tunnel_from_portal
step "tunnel: SIGKILL ends the session with the relay; the restarted agent closes sshd" tunnel_agent_killed
step "tunnel: the TTL ends sshd and what runs in it with the agent down" tunnel_ttl_with_agent_down
step "licences to zero, 6 days on: the agent stops the telephony unit" licence_zero_stops_telephony
reboot_container
step "after a reboot the agent stops the telephony unit again" telephony_stays_stopped_after_reboot
step "a licence added back: telephony runs again; over-use reported" licence_back_restarts_telephony
step "slow telephony stop" slow_telephony_stop
step "upgrade to a newer .deb keeps the licence" upgrade_keeps_licence
step "air-gapped: every network cut; no portal.url, a fresh state, restarted by systemd" air_gapped_cut_off
step "air-gapped: activated by a request carried out and a licence file carried in" air_gapped_activated_by_files
step "air-gapped: renewed by a usage report; the older licence file refused" air_gapped_renewed_by_files
step "purge leaves no unit, state or configuration, and keeps the users" purge_leaves_nothing
step "WMS: purge removes the helper's results and apt source; the WMS stays" wms_purged

echo
log "summary"
printf '  %s\n' "${steps[@]}"
if [ "$failed" -gt 0 ]; then
	log "$failed step(s) failed; the agent's journal:"
	ct journalctl -u pbx-agent.service --no-pager -n 40 2>/dev/null | sed 's/^/    /'
	exit 1
fi
log "all ${#steps[@]} steps passed"
