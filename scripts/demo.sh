#!/usr/bin/env bash
# The demo: the reference portal and pbx-agent on loopback. The portal
# creates a PBX, the agent is given its key and becomes active, and the
# status shows the licensed counts. Everything lives in a temporary folder;
# no root needed. It runs until interrupted (Ctrl-C, SIGINT or SIGTERM),
# with or without a terminal; then it stops both and removes the folder.
# On any failure it stops, says why and keeps the folder with its logs.
set -euo pipefail

bin=${1:-bin}
portal_addr=${PORTAL_ADDR:-127.0.0.1:8780}
agent_http=${AGENT_HTTP:-127.0.0.1:9731}
portal="http://$portal_addr"
work=
pids=()
doing="checking what the demo needs"
interrupted=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; doing=$*; }
die() { echo "demo: $*" >&2; exit 1; }

# stop ends the portal and the agent: SIGTERM, then SIGKILL after 10 s.
stop() {
	local pid
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for _ in $(seq 100); do
		local alive=
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[ -z "$alive" ] && break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}

finish() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	stop
	[ -n "$work" ] || exit "$rc"
	if [ -n "$interrupted" ]; then
		rm -rf "$work"
		echo "stopped; removed $work"
		exit 0
	fi
	[ "$rc" -ne 0 ] || rc=1
	{
		echo
		echo "demo failed while: $doing (exit $rc)"
		local log
		for log in "$work"/portal.log "$work"/agent.log; do
			[ -s "$log" ] || continue
			echo "-- last lines of $log:"
			tail -n 8 "$log"
		done
		echo "Logs and data kept in $work (portal.log, agent.log); remove it when done."
	} >&2
	exit "$rc"
}
trap finish EXIT
trap 'interrupted=1; exit 130' INT TERM

# split_addr HOST:PORT prints "HOST PORT" ([::1]:80 gives "::1 80").
split_addr() {
	local host=${1%:*} port=${1##*:}
	host=${host#[}; host=${host%]}
	echo "$host $port"
}

# port_taken ADDR succeeds when something accepts connections on ADDR.
port_taken() {
	local host port
	read -r host port < <(split_addr "$1")
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# http_ok ADDR PATH succeeds when ADDR answers GET PATH with a 200.
http_ok() {
	local host port status
	read -r host port < <(split_addr "$1")
	status=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
		printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3 && head -n 1 <&3' _ "$host" "$port" "$2" 2>/dev/null) || return 1
	[[ $status == "HTTP/1."?" 200"* ]]
}

# wait_for NAME PID CMD... runs CMD until it succeeds, for at most 10
# seconds, and gives up at once when PID (the program NAME) has ended.
wait_for() {
	local name=$1 pid=$2
	shift 2
	for _ in $(seq 100); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || die "$name ended before it answered ($*): see its log below"
		sleep 0.1
	done
	die "gave up after 10 s waiting for $name to answer: $*"
}

for b in pbx-portal-sim pbx-agent; do
	[ -x "$bin/$b" ] || die "$bin/$b is missing: run make build (or make demo, which builds it)"
done
[ "$portal_addr" != "$agent_http" ] || die "PORTAL_ADDR and AGENT_HTTP are both $portal_addr: give them different ports"
taken=
for v in PORTAL_ADDR AGENT_HTTP; do
	addr=$portal_addr; [ "$v" = PORTAL_ADDR ] || addr=$agent_http
	if port_taken "$addr"; then
		read -r host port < <(split_addr "$addr")
		echo "demo: $v $addr is taken: something already listens there. Stop it, or move the demo: $v=$host:$((port + 10)) make demo" >&2
		taken=1
	fi
done
[ -z "$taken" ] || exit 1

work=$(mktemp -d "${TMPDIR:-/tmp}/pbx-demo.XXXXXX")

sim() { "$bin/pbx-portal-sim" --portal "$portal" "$@"; }
agent() { "$bin/pbx-agent" --config "$work/agent.yaml" "$@"; }
# status prints the agent's status. Its exit code is its state's (0 active
# or offline, 10 to 19 the other states): any of these means the agent
# answered; 2 that it could not be asked.
status() {
	local rc=0
	agent status "$@" || rc=$?
	[ "$rc" -eq 0 ] || { [ "$rc" -ge 10 ] && [ "$rc" -le 19 ]; }
}

# serving succeeds once the portal started here has logged that it serves.
serving() { grep -qF 'msg="pbx-portal-sim serving"' "$work/portal.log"; }

step "Starting the reference portal on $portal (logs in $work/portal.log)"
# Started directly, not through the helper functions, so that $! is the
# program itself and stop ends it.
"$bin/pbx-portal-sim" serve --listen "$portal_addr" --data "$work/portal" --interval 15s 2> "$work/portal.log" &
portal_pid=$!
pids+=("$portal_pid")
wait_for "the portal" "$portal_pid" serving
# The agent trusts the keyring in $work alone: a portal with another one is
# not the one started here, and talking to it would end in "untrusted
# portal key".
grep -F 'msg="pbx-portal-sim serving"' "$work/portal.log" | grep -qF -e "keyring=$work/portal/keyring " -e "keyring=\"$work/portal/keyring\"" ||
	die "the portal started here serves another keyring than $work/portal/keyring: not the portal the agent will trust"
wait_for "the portal" "$portal_pid" sim clock

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
ssh:
  # Support SSH lets in one account alone: here the demo's own, on loopback.
  user: $(id -un)
  listen: ["127.0.0.1"]
users:
  interval: 2s
  sqlite:
    path: $users_db
YAML

step "Starting pbx-agent (logs in $work/agent.log)"
"$bin/pbx-agent" --config "$work/agent.yaml" run 2> "$work/agent.log" &
agent_pid=$!
pids+=("$agent_pid")
wait_for "the agent" "$agent_pid" status
wait_for "the agent" "$agent_pid" http_ok "$agent_http" /readyz

step "pbx-agent status, before activation (exit 10: unactivated)"
status

step "pbx-agent activate < key"
agent activate < "$work/key"

step "pbx-agent status (used: counted from the user database; exit 0: active)"
agent status

step "pbx-agent check uc-premium --count 2: may the WMS add two UC-Premium users?"
agent check uc-premium --count 2 || true
step "pbx-agent check uc-premium --count 4: and four? (exit 1, the reason on stderr)"
agent check uc-premium --count 4 || echo "(exit $?)"

doing="checking the status URL answers"
http_ok "$agent_http" /v1/status || die "http://$agent_http/v1/status does not answer 200"

sqlite_try="sqlite3 $users_db \"INSERT INTO users (name, profile) VALUES ('new', 'uc-premium')\""
command -v sqlite3 >/dev/null || sqlite_try="# adding a user needs the sqlite3 command (Debian: sqlite3)"
ssh_note="# sshd on 127.0.0.1:2222, within a second"
ssh_key="" ssh_login=""
if command -v ssh-keygen >/dev/null && ssh-keygen -q -t ed25519 -N "" -C pbx-demo-support -f "$work/support" 2>/dev/null; then
	ssh_key=" --pubkey $work/support.pub"
	ssh_login="ssh -i $work/support -p 2222 -o StrictHostKeyChecking=no $(id -un)@127.0.0.1 true   # the pushed key logs in"
fi
[ -x /usr/sbin/sshd ] || ssh_note="# needs /usr/sbin/sshd (Debian: openssh-server, not installed; the demo installs nothing)"

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
  $sqlite_try
  $bin/pbx-agent --config $work/agent.yaml status
  $bin/pbx-portal-sim --portal $portal command acme.example ssh-open --ttl 10m${ssh_key} --wait 30s   $ssh_note
  $bin/pbx-agent --config $work/agent.yaml ssh status
  $ssh_login
  $bin/pbx-portal-sim --portal $portal command acme.example ssh-close --wait 30s

Running until interrupted: Ctrl-C, or SIGINT or SIGTERM to pid $$, stops the portal and the agent and removes $work.
TXT

# wait -n returns when either program ends, or at once when a signal's
# trap runs; a program ending on its own is a failure worth its logs.
doing="running"
set +e
wait -n "${pids[@]}"
rc=$?
set -e
kill -0 "$portal_pid" 2>/dev/null || doing="running: the portal ended on its own (exit $rc)"
kill -0 "$agent_pid" 2>/dev/null || doing="running: the agent ended on its own (exit $rc)"
exit 1
