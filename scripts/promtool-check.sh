#!/usr/bin/env bash
# Checks what Prometheus reads of pbx-agent with Debian's promtool: the
# alert rules (promtool check rules, promtool test rules) and the metrics of
# a running, activated agent (promtool check metrics). Installs Debian's
# prometheus package when promtool is missing; its service is not used.
# Usage: scripts/promtool-check.sh [BIN_DIR]   (default bin, from make build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin}

if ! command -v promtool >/dev/null; then
	echo "installing: prometheus (for promtool)"
	sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus
fi

echo "== promtool: alert rules"
promtool check rules packaging/prometheus/pbx-agent.rules.yml
promtool test rules packaging/prometheus/tests.yml

echo "== promtool: metrics of a running, activated agent"
work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# wait_for runs a command until it succeeds, for at most 10 seconds.
wait_for() {
	for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "gave up waiting for: $*" >&2
	return 1
}
# logged_addr prints the address that a log line names as key=host:port.
logged_addr() { grep -o "$2=[^ ]*" "$1" | head -n 1 | sed "s|^$2=||; s|^http://||"; }
# get prints the body of GET http://$1$2, through bash alone.
get() {
	local host=${1%:*} port=${1##*:}
	exec 3<>"/dev/tcp/$host/$port"
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&3
	sed '1,/^\r$/d' <&3
	exec 3<&-
}
fail() {
	echo "$*" >&2
	for log in "$work"/*.log; do echo "--- $log" >&2; tail -n 20 "$log" >&2; done
	exit 1
}

# Ports are chosen by the kernel (:0) and read back from the logs.
"$bin/pbx-portal-sim" serve --listen 127.0.0.1:0 --data "$work/portal" 2> "$work/portal.log" &
pids+=($!)
wait_for grep -q 'url=http://' "$work/portal.log" || fail "the portal did not start"
portal=http://$(logged_addr "$work/portal.log" url)
"$bin/pbx-portal-sim" --portal "$portal" pbx create --name promtool.example --model WPBX-VM --term monthly \
	--users uc-premium=10 --users pbx-basic=3 > "$work/key"

cat > "$work/agent.yaml" <<YAML
portal:
  url: $portal
  keyring: $work/portal/keyring
state_dir: $work/agent/state
runtime_dir: $work/agent/run
listen:
  http: 127.0.0.1:0
  socket: $work/agent/run/agent.sock
identity:
  model: WPBX-VM
YAML
"$bin/pbx-agent" --config "$work/agent.yaml" run 2> "$work/agent.log" &
pids+=($!)
wait_for grep -q 'msg="HTTP listener bound"' "$work/agent.log" || fail "the agent did not start"
http=$(grep 'msg="HTTP listener bound"' "$work/agent.log" | grep -o 'addr=[^ ]*' | head -n 1 | sed 's|^addr=||')
"$bin/pbx-agent" --config "$work/agent.yaml" activate < "$work/key" > /dev/null || fail "activation failed"

get "$http" /metrics > "$work/metrics.txt"
grep -q '^pbx_license_state{state="active"} 1$' "$work/metrics.txt" || fail "the agent's metrics do not say active: $(grep pbx_license_state "$work/metrics.txt")"
promtool check metrics < "$work/metrics.txt" || fail "promtool check metrics refused the agent's metrics"
echo "SUCCESS: $(grep -c '^pbx_' "$work/metrics.txt") pbx_ samples from http://$http/metrics pass promtool check metrics"
