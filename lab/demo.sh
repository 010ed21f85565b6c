#!/bin/bash
# The raftlb demo, run inside the kernel lab VM by `make demo`
# (lab/run.sh --exec lab/demo.sh). It tells the story of the source
# documents on a real kernel: three machines behind one virtual IP, all
# three serving, and the VIP taken over when the coordinator's cable is
# pulled. Every number it prints is measured here, on the wire.
set -euo pipefail

R="$PWD/bin/raftlb"
L="$PWD/bin/raftlb-lab"
VIP=172.95.69.100
PORT=3128
NODES=(m30 m40 m50)
D="${TMPDIR:-/tmp}/demo"
OUT=/run/labout/demo
mkdir -p "$D" "$OUT"

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
ip_of() { echo "172.95.69.${1#m}"; }
sock() { echo "unix://$D/$1.sock"; }
has_vip() { ip -n "$1" -4 addr show dev "$2" | grep -q "inet $VIP/"; }

bold "1. The LAN: three machines (m30, m40, m50) and a client on one switch"
say "Each machine is a network namespace in this VM, plugged into the bridge br0."
{
	echo "link add br0 type bridge"
	echo "link set br0 up"
	for n in "${NODES[@]}" client; do
		echo "netns add $n"
		echo "link add v-$n type veth peer name eth0 netns $n"
		echo "link set v-$n master br0 up"
	done
} | ip -batch -
for n in "${NODES[@]}" client; do
	a=172.95.69.10
	[ "$n" = client ] || a=$(ip_of "$n")
	ip -n "$n" addr add "$a/24" dev eth0
	ip -n "$n" link set eth0 up
	ip -n "$n" link set lo up
	say "  $n: $a on eth0"
done

bold "2. Every machine runs a service on port $PORT (squid in the source documents; here a tiny server that answers with its name)"
for n in "${NODES[@]}"; do
	ip netns exec "$n" "$L" serve --name "$n" --port "$PORT" >"$OUT/serve-$n.log" 2>&1 &
done

bold "3. Secrets: an encrypted gossip key and a CA with one certificate per machine"
run "$R" keygen -o "$D/key" >/dev/null
run "$R" tls init --dir "$D/tls" >/dev/null
for n in "${NODES[@]}"; do "$R" tls cert --dir "$D/tls" --name "$n" --ip "$(ip_of "$n")" --out "$D/tls-$n" >/dev/null; done

bold "4. One raftlb agent per machine, the same command everywhere"
for n in "${NODES[@]}"; do
	ip netns exec "$n" "$R" agent --name "$n" --bind "$(ip_of "$n")" --data-dir "$D/$n" \
		--api "$(sock "$n")" --bootstrap-expect 3 --interface eth0 \
		--key-file "$D/key" --tls-dir "$D/tls-$n" >"$OUT/agent-$n.log" 2>&1 &
	echo $! >"$D/$n.pid"
done
say "  ip netns exec m30 raftlb agent --name m30 --bind 172.95.69.30 --bootstrap-expect 3 --interface eth0 ..."
for n in "${NODES[@]}"; do until [ -S "$D/$n.sock" ]; do sleep 0.1; done; done
run "$R" join --api "$(sock m40)" 172.95.69.30:7946
run "$R" join --api "$(sock m50)" 172.95.69.30:7946

bold "5. Describe the service once, from any machine"
cat >"$D/services.yaml" <<YAML
# deploy/examples/services.yaml without persistence: this demo has one
# client, and persistence would send all its connections to one machine.
vips:
  - address: $VIP
    interface: eth0
services:
  - name: proxy
    vip: $VIP
    port: $PORT
    scheduler: rr
    real_servers: all-nodes
    fallback: 127.0.0.1:$PORT
YAML
sed 's/^/    /' "$D/services.yaml"
run "$R" apply --api "$(sock m40)" -f "$D/services.yaml"

# status exits 1 (degraded) or 2 (no quorum) while it still prints the view.
dc_of() { { "$R" status --api "$(sock "$1")" --json 2>/dev/null || true; } | sed -n 's/^  "dc": "\(.*\)",$/\1/p'; }
status_of() { run "$R" status --api "$(sock "$1")" || say "  (raftlb status exited $?: 1 = degraded, as a monitoring check's WARNING)"; }
wait_table() { # $1 = DC, $2 = number of real servers
	until [ "$("$R" ipvs --api "$(sock "$1")" 2>/dev/null | grep -c -- '->.*Route')" = "$2" ]; do sleep 0.2; done
}
DC=""
until DC=$(dc_of m30) && [ -n "$DC" ] && has_vip "$DC" eth0; do sleep 0.2; done
wait_table "$DC" 3

bold "6. The cluster at a glance (any machine answers)"
status_of m30

bold "7. The DC ($DC) holds the VIP on its interface and balances it; the others carry it on lo, silenced for ARP"
for n in "${NODES[@]}"; do
	where=lo
	has_vip "$n" eth0 && where=eth0
	say "  $n: VIP $VIP on $where   (arp_ignore=$(ip netns exec "$n" cat /proc/sys/net/ipv4/conf/all/arp_ignore), arp_announce=$(ip netns exec "$n" cat /proc/sys/net/ipv4/conf/all/arp_announce))"
done
run "$R" ipvs --api "$(sock "$DC")"

bold "8. A client opens 30 connections to the VIP: all three machines answer"
printf '\033[2m$ ip netns exec client raftlb-lab probe --target %s:%s --interval 20ms --duration 1500ms\033[0m\n' "$VIP" "$PORT"
ip netns exec client "$L" probe --target "$VIP:$PORT" --interval 20ms --duration 1500ms --out "$OUT/probe-balance.json" 2>&1 | tail -1 | sed 's/^/  /'
mac() { ip -n "$1" link show eth0 | awk '/link\/ether/ {print $2}'; }
say "  the client's ARP cache: $(ip -n client neigh show "$VIP" | awk '{print $1, "is-at", $5}')   ($DC's MAC is $(mac "$DC"))"

bold "9. Pull the DC's cable while the client keeps opening a connection every 20 ms"
ip netns exec client "$L" probe --target "$VIP:$PORT" --interval 20ms --timeout 1s --until-signal --out "$OUT/probe-failover.json" >"$OUT/probe-failover.log" 2>&1 &
PROBE=$!
sleep 1
run ip link set "v-$DC" down
t0=$(date +%s%3N)
NEW=""
until [ -n "$NEW" ]; do
	for n in "${NODES[@]}"; do
		[ "$n" != "$DC" ] && has_vip "$n" eth0 && NEW=$n
	done
done
t1=$(date +%s%3N)
until ip -n client neigh show "$VIP" | grep -q "$(mac "$NEW")"; do sleep 0.05; done
t2=$(date +%s%3N)
wait_table "$NEW" 2
sleep 1
kill -TERM "$PROBE"
wait "$PROBE" || true
outage=$(sed -n 's/.*"longest_outage_ms": *\([0-9.]*\).*/\1/p' "$OUT/probe-failover.json" | head -1)
failures=$(sed -n 's/.*"failures": *\([0-9]*\).*/\1/p' "$OUT/probe-failover.json" | head -1)
say "  $NEW took the VIP $((t1 - t0)) ms after the pull (measured by polling ip addr, ~0.1 s resolution here)"
say "  the client's ARP entry moved to $NEW's MAC after $((t2 - t0)) ms (gratuitous ARP)"
say "  client-visible outage: ${outage%.*} ms ($failures connections failed)"
echo "figure: demo_cable_pull_outage = ${outage%.*} ms"

bold "10. The cluster after the failover, seen from $NEW"
status_of "$NEW"
run "$R" ipvs --api "$(sock "$NEW")"
say "  $DC, cut off from the majority, gave the VIP up on its own: VIP on $(has_vip "$DC" eth0 && echo eth0 || echo lo)"

bold "11. Plug the cable back: $DC rejoins as a member and serves again"
run ip link set "v-$DC" up
wait_table "$NEW" 3
run "$R" ipvs --api "$(sock "$NEW")"
say "Done. Agent logs are in .lab/out/demo/."
