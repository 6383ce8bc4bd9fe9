#!/usr/bin/env bash
# The demo: a portal issues a PBX key, and the agent checks it offline the
# way a partner's paste would reach it: intact, wrapped and quoted by a mail
# client, cut short, and signed by a portal this PBX does not trust.
set -uo pipefail

bin=${1:-bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sim() { "$bin/pbx-portal-sim" "$@"; }
agent() { "$bin/pbx-agent" --config "$work/agent.yaml" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cat > "$work/agent.yaml" <<YAML
portal:
  keyring: $work/portal/keyring
identity:
  model: WPBX-VM
YAML

step "The portal creates a PBX (10 UC-Premium, 3 PBX-BASIC users) and prints its key"
sim pbx create --data "$work/portal" --name acme.example --model WPBX-VM --term monthly \
	--users uc-premium=10 --users pbx-basic=3 > "$work/key"
echo "key: $(head -c 24 "$work/key")… ($(wc -c < "$work/key") characters, kept off the screen: it is a credential)"
echo "trusted portal keys: $(ls "$work/portal/keyring")"

step "pbx-agent key inspect < key"
agent key inspect < "$work/key"
echo "exit $?"

step "The same key wrapped at 64 columns in quotes, as a mail client sends it"
{ printf '"'; fold -w 64 "$work/key" | tr -d '\n' | fold -w 64; printf '"\n'; } > "$work/key-wrapped"
agent key inspect --key-file "$work/key-wrapped" | tail -n 1
echo "exit $?"

step "A key cut short by a bad copy"
head -c 300 "$work/key" | agent key inspect
echo "exit $?"

step "A key from a portal this PBX does not trust"
sim pbx create --data "$work/other-portal" --name intruder.example --users uc-premium=500 |
	agent key inspect
echo "exit $?"

step "A key for a hardware appliance pasted into this VM"
sim pbx create --data "$work/portal" --name hw.example --model WPBX-HW --users pbx-basic=1 |
	agent key inspect >/dev/null
echo "exit $?"
