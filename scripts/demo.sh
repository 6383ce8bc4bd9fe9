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

step "A WMS user database: 7 UC-Premium, 2 PBX-BASIC, 1 UC-Wizyconf users"
mkdir -p "$work/wms"
users_db=$work/wms/users.db
if command -v sqlite3 >/dev/null; then
	sqlite3 "$users_db" <<SQL
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, profile TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7)
INSERT INTO users (name, profile) SELECT 'premium ' || i, 'uc-premium' FROM n;
INSERT INTO users (name, profile) VALUES ('door phone', 'pbx-basic'), ('fax', 'pbx-basic'), ('room 1', 'uc-wizyconf');
SQL
	echo "made with the sqlite3 command: $users_db"
else
	(cd "$(dirname "$0")/.." && go run ./internal/tools/seedusers -db "$users_db" uc-premium=7 pbx-basic=2 uc-wizyconf=1)
	echo "made with internal/tools/seedusers (no sqlite3 command here): $users_db"
fi

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
users:
  interval: 2s
  sqlite:
    path: $users_db
YAML

step "Starting pbx-agent (logs in $work/agent.log)"
"$bin/pbx-agent" --config "$work/agent.yaml" run 2> "$work/agent.log" &
pids+=($!)
wait_for agent status

step "pbx-agent status, before activation"
agent status

step "pbx-agent activate < key"
agent activate < "$work/key"

step "pbx-agent status (used: counted from the user database)"
agent status

step "pbx-agent check uc-premium --count 2: may the WMS add two UC-Premium users?"
agent check uc-premium --count 2 || true
step "pbx-agent check uc-premium --count 4: and four? (exit 1, the reason on stderr)"
agent check uc-premium --count 4 || echo "(exit $?)"

cat <<TXT

Open:
  http://$agent_http/            the status page
  http://$agent_http/v1/status   the agent's status, JSON
  http://$agent_http/metrics     Prometheus metrics
  http://$agent_http/readyz      readiness
The portal:
  $bin/pbx-portal-sim --portal $portal pbx list
Try:
  $bin/pbx-portal-sim --portal $portal pbx licenses acme.example uc-premium=20
  $bin/pbx-agent --config $work/agent.yaml refresh
  $bin/pbx-agent --config $work/agent.yaml check uc-premium --count 3 --reserve
  sqlite3 $users_db "INSERT INTO users (name, profile) VALUES ('new', 'uc-premium')"
  $bin/pbx-agent --config $work/agent.yaml status
  $bin/pbx-portal-sim --portal $portal command acme.example ssh-open --ttl 10m --wait 30s   # sshd on 2222, within a second
  $bin/pbx-agent --config $work/agent.yaml ssh status
  $bin/pbx-portal-sim --portal $portal command acme.example ssh-close --wait 30s
TXT

if [ -t 0 ]; then
	echo
	echo "Press Ctrl-C to stop the portal and the agent."
	wait
fi
