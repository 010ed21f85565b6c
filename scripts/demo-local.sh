#!/usr/bin/env bash
# A three-node raftlb control plane on loopback: key and certificates,
# three agents (--dataplane none: no IPVS needed), join, apply the sample
# squid spec, show the status, kill -9 the DC and show who takes over.
# Everything lives in a temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o bin/raftlb ./cmd/raftlb
R="$PWD/bin/raftlb"
D="$(mktemp -d /tmp/raftlb-demo.XXXXXX)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$D"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sock() { echo "unix://$D/n$1.sock"; }
# dc_of N prints the DC that node N sees, or nothing when it sees none
# with quorum or warns that its view is stale.
dc_of() {
	local out
	local rc=0
	out="$("$R" status --api "$(sock "$1")" 2>/dev/null)" || rc=$?
	[ "$rc" -le 1 ] || return 0 # 1: degraded, still a DC
	grep -q WARNING <<<"$out" && return 0
	sed -n 's/.*Current DC: \([^ ]*\) .*partition with quorum/\1/p' <<<"$out"
}
now_ms() { date +%s%3N; }

say "Secrets: one gossip key and a CA with a certificate per node"
"$R" keygen -o "$D/key"
"$R" tls init --dir "$D/tls"
for i in 1 2 3; do "$R" tls cert --dir "$D/tls" --name "n$i" --ip "127.0.0.$i" --out "$D/tls-n$i" >/dev/null; done

say "Three agents on 127.0.0.1-3 (logs in $D/n*.log)"
start() {
	"$R" agent --name "n$1" --data-dir "$D/d$1" --bind "127.0.0.$1" --api "$(sock "$1")" \
		--bootstrap-expect 3 --dataplane none --key-file "$D/key" --tls-dir "$D/tls-n$1" 2>>"$D/n$1.log" &
	pids[$1]=$!
}
for i in 1 2 3; do start "$i"; done
for i in 1 2 3; do
	until [ -S "$D/n$i.sock" ]; do sleep 0.05; done
done
"$R" join --api "$(sock 2)" 127.0.0.1:7946
"$R" join --api "$(sock 3)" 127.0.0.1:7946
until [ -n "$(dc_of 1)" ]; do sleep 0.05; done

say "Apply the squid spec from any node (deploy/examples/services.yaml)"
"$R" apply --api "$(sock 2)" -f deploy/examples/services.yaml

say "An invalid file is refused and changes nothing"
printf 'services:\n  - vip: 172.95.69.300\n    port: 0\n    scheduler: fastest\n' >"$D/bad.yaml"
"$R" apply --api "$(sock 1)" -f "$D/bad.yaml" || true

say "raftlb status (from n1)"
"$R" status --api "$(sock 1)" || echo "(status exited $?: 1 = degraded, 2 = no quorum)"

dc="$(dc_of 1)"
n="${dc#n}"
survivor=$(( n % 3 + 1 ))
say "kill -9 the DC ($dc) and wait for a new one"
t0=$(now_ms)
kill -9 "${pids[$n]}"
wait "${pids[$n]}" 2>/dev/null || true
until new="$(dc_of "$survivor")"; [ -n "$new" ] && [ "$new" != "$dc" ]; do sleep 0.01; done
t1=$(now_ms)
echo "new DC: $new"
echo "figure: demo_failover_dc_serving = $((t1 - t0)) ms"
"$R" status --api "$(sock "$survivor")" || echo "(status exited $?: 1 = degraded — $dc is offline)"

say "Restart $dc: it rejoins from its data dir, without a join command"
start "$n"
until [ "$(dc_of "$n")" = "$new" ]; do sleep 0.05; done
{ "$R" status --api "$(sock "$n")" || true; } | sed -n '1,/^Virtual IPs/p'
echo
echo "The data plane (VIP, IPVS, ARP) arrives with the kernel lab; this demo ran the control plane only."
