#!/usr/bin/env bash
# Installs what is missing, brings up the default lab and shows interface mirroring:
# a capture on vm1 to the default analyzer, a ping to vm2, the mirrored packets, stop.
# The lab stays up afterwards; `.venv/bin/mirrorlab down` tears it down.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
mirrorlab="$repo/.venv/bin/mirrorlab"
topology="${1:-$repo/topologies/default.yaml}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if "$mirrorlab" status >/dev/null 2>&1; then
    step "A lab is running already; using it (mirrorlab down first for a fresh one)"
else
    step "Bringing up the lab ($topology)"
    "$mirrorlab" up "$topology"
fi
"$mirrorlab" status

step "Starting a packet capture on vm1 (default analyzer interface-packet-capture)"
capture_json=$("$mirrorlab" capture start --vm vm1 --direction both --json)
capture_id=$(printf '%s' "$capture_json" | "$repo/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$mirrorlab" capture show "$capture_id"

step "vm1 pings vm2 (10.1.1.12, on another compute node)"
"$mirrorlab" exec vm1 -- ping -c 5 -i 0.2 10.1.1.12
sleep 1

step "What the analyzer received (tshark reading the capture's pcapng: the direction as vm1 saw it, then each packet)"
pcap=$(mktemp --suffix=.pcapng)
"$mirrorlab" capture pcap "$capture_id" -o "$pcap"
tshark -r "$pcap" -T fields -e frame.number -e frame.packet_flags_direction -e _ws.col.Source -e _ws.col.Destination -e _ws.col.Info 2>/dev/null
"$mirrorlab" capture show "$capture_id"

step "Stopping the capture: its mirror flows are removed"
"$mirrorlab" capture stop "$capture_id"

api_port=$("$mirrorlab" status --json | "$repo/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["controller"]["api"])')
step "The lab is still up"
echo "REST API and web UI: $api_port/   (OpenAPI: $api_port/openapi.json)"
echo "Try: $mirrorlab exec vm3 -- ping -c 2 10.1.1.11    |    $mirrorlab down"
