#!/usr/bin/env bash
# The demo: the reference portal and pbx-agent on loopback. The portal
# creates a PBX, the agent is given its key and becomes active, and the
# status shows the licensed counts. Everything lives in a temporary folder;
# no root needed. Ctrl-C stops both.
set -euo pipefail

bin=${1:-bin}
portal_addr=${PORTAL_ADDR:-127.0.0.1:8780}
agent_http=${AGENT_HTTP:-127.0.0.1:9731}
portal="http://$portal_addr"
work=$(mktemp -d)
pids=()

cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
	echo "stopped; removed $work"
}
trap cleanup EXIT INT TERM

sim() { "$bin/pbx-portal-sim" --portal "$portal" "$@"; }
agent() { "$bin/pbx-agent" --config "$work/agent.yaml" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_for runs a command until it succeeds, for at most 10 seconds.
wait_for() {
	for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "gave up waiting for: $*" >&2
	return 1
}

step "Starting the reference portal on $portal"
# Started directly, not through the helper functions, so that $! is the
# program itself and cleanup stops it.
"$bin/pbx-portal-sim" serve --listen "$portal_addr" --data "$work/portal" --interval 15s 2> "$work/portal.log" &
pids+=($!)
wait_for sim clock

step "The portal creates a PBX: 10 UC-Premium, 3 PBX-BASIC, 1 UC-Wizyconf"
sim pbx create --name acme.example --model WPBX-VM --term monthly \
	--users uc-premium=10 --users pbx-basic=3 --users uc-wizyconf=1 > "$work/key"
echo "PBX key: $(head -c 24 "$work/key")… (kept off the screen: it is a credential)"

cat > "$work/agent.yaml" <<YAML
portal:
  url: $portal
  keyring: $work/portal/keyring
state_dir: $work/agent/state
runtime_dir: $work/agent/run
listen:
  http: $agent_http
  socket: $work/agent/run/agent.sock
identity:
  model: WPBX-VM
YAML

step "Starting pbx-agent (logs in $work/agent.log)"
"$bin/pbx-agent" --config "$work/agent.yaml" run 2> "$work/agent.log" &
pids+=($!)
wait_for agent status

step "pbx-agent status, before activation"
agent status

step "pbx-agent activate < key"
agent activate < "$work/key"

step "pbx-agent status"
agent status

cat <<TXT

Open:
  http://$agent_http/v1/status   the agent's status, JSON
  http://$agent_http/readyz      readiness
The portal:
  $bin/pbx-portal-sim --portal $portal pbx list
Try:
  $bin/pbx-portal-sim --portal $portal pbx licenses acme.example uc-premium=20
  $bin/pbx-agent --config $work/agent.yaml refresh
TXT

if [ -t 0 ]; then
	echo
	echo "Press Ctrl-C to stop the portal and the agent."
	wait
fi
