#!/usr/bin/env bash
# The multi-host demo in network namespaces: 3 hosts joined by an underlay
# bridge, one Tapestry agent per host (demo/host.sh, the same entry point the
# docker-compose demo runs), 2 pods per host. It shows the overlay step by step
# and cleans everything up, unless --keep is given.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
# Name prefix of every namespace and link the demo makes (tests pass their own).
P="${DEMO_PREFIX:-tdemo}"
STATE_DIR=$(mktemp -d /tmp/tapestry-demo.XXXXXX)
export STATE_DIR NS_PREFIX=$P
HOSTS=(host-a host-b host-c)

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

cleanup() {
  for h in "${HOSTS[@]}"; do
    [ -f "$STATE_DIR/$h.pid" ] && kill "$(cat "$STATE_DIR/$h.pid")" 2>/dev/null || true
  done
  sleep 0.5
  rm -rf /etc/netns/$P-host-c-p2
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$P-"); do ip link del "$l" 2>/dev/null; done
  rm -rf "$STATE_DIR"
}
if [ $KEEP = 0 ]; then trap cleanup EXIT; fi
[ "$P" = tdemo ] && bash scripts/sweep.sh >/dev/null   # leftovers of an earlier demo

bold "1. Three hosts in network namespaces, joined by an underlay bridge (192.168.250.0/24)"
ip netns add $P-underlay
ip -n $P-underlay link add br0 type bridge
ip -n $P-underlay link set br0 up
i=1
for h in "${HOSTS[@]}"; do
  ip netns add $P-$h
  ip -n $P-$h link set lo up
  ip link add $P-v$i type veth peer name ul0 netns $P-$h
  ip link set $P-v$i netns $P-underlay
  ip -n $P-underlay link set $P-v$i master br0 up
  ip -n $P-$h addr add 192.168.250.$i/24 dev ul0
  ip -n $P-$h link set ul0 up
  # Pod namespaces are made here: `ip netns add` inside `ip netns exec` would
  # only mount them in that command's private mount namespace.
  ip netns add $P-$h-p1; ip netns add $P-$h-p2
  say "$h: namespace $P-$h, underlay 192.168.250.$i, pods in $P-$h-p1 and $P-$h-p2"
  i=$((i + 1))
done

bold "2. One Tapestry agent per host, 2 pods each (config written by demo/host.sh)"
i=1
for h in "${HOSTS[@]}"; do
  peers=""
  for j in 1 2 3; do [ $j != $i ] && peers+="192.168.250.$j "; done
  NODE_NAME=$h UNDERLAY_IP=192.168.250.$i PEERS="$peers" POD_OCTET=$i \
    ip netns exec $P-$h demo/host.sh > "$STATE_DIR/$h.log" 2>&1 &
  echo $! > "$STATE_DIR/$h.pid"
  i=$((i + 1))
done
for h in "${HOSTS[@]}"; do
  for _ in $(seq 1 100); do grep -q '"agent ready"' "$STATE_DIR/$h.log" 2>/dev/null && break; sleep 0.1; done
  grep -q '"agent ready"' "$STATE_DIR/$h.log" || { echo "agent $h did not start:"; cat "$STATE_DIR/$h.log"; exit 1; }
  say "$h: agent ready (log: $STATE_DIR/$h.log)"
done
say "config of host-a:"
sed 's/^/     /' "$STATE_DIR/host-a.yaml"

bold "3. A pod on host-a pings pods on host-b and host-c (VXLAN VNI 42 over UDP 4789)"
run ip netns exec $P-host-a-p1 ping -c 3 -i 0.2 10.244.2.2
run ip netns exec $P-host-a-p1 ping -c 3 -i 0.2 10.244.3.3

bold "4. What host-a's switch learned: pods local (static) and remote MACs behind VTEPs"
run ip netns exec $P-host-a node bin/tapestry fdb show --socket "$STATE_DIR/host-a.sock"

bold "5. TCP across hosts: iperf3 for 2 seconds from host-a's pod to host-c's pod"
ip netns exec $P-host-c-p1 iperf3 -s -1 >/dev/null 2>&1 &
sleep 0.5
run ip netns exec $P-host-a-p2 iperf3 -c 10.244.3.2 -t 2 -f g | grep -E 'sender|receiver'

bold "6. A service: web (10.96.0.10:80) with backends on host-a and host-b, called from host-c"
ip netns exec $P-host-a-p1 node demo/web-server.js host-a-web-1 >/dev/null 2>&1 & disown
ip netns exec $P-host-b-p1 node demo/web-server.js host-b-web-1 >/dev/null 2>&1 & disown
for _ in $(seq 1 50); do ip netns exec $P-host-b-p1 ss -ltn | grep -q ':8080' && ip netns exec $P-host-a-p1 ss -ltn | grep -q ':8080' && break; sleep 0.1; done
say "each connection is balanced by host-c's agent (Maglev); the answer names the backend:"
for i in 1 2 3 4 5 6; do ip netns exec $P-host-c-p1 curl -s --retry 2 --retry-delay 1 -m 5 http://10.96.0.10/ | sed 's/^/     /'; done
say "and by name, through the agent's cluster DNS (10.96.0.53):"
mkdir -p /etc/netns/$P-host-c-p2 && echo "nameserver 10.96.0.53" > /etc/netns/$P-host-c-p2/resolv.conf
run ip netns exec $P-host-c-p2 curl -s --retry 2 --retry-delay 1 -m 5 http://web.default.svc.cluster.local/
run ip netns exec $P-host-c node bin/tapestry svc list --socket "$STATE_DIR/host-c.sock"

bold "7. A capture from inside the dataplane: host-a-web-1's traffic, as a pcap file"
# A filter keeps the pods' IPv6 router solicitations (flooded to every pod) out of the 12 packets;
# the requests go to the pod itself: through the VIP, Maglev could send all six to host-b.
ip netns exec $P-host-a node bin/tapestry capture --pod host-a-web-1 -c 12 --duration 10 -w "$STATE_DIR/web.pcap" --socket "$STATE_DIR/host-a.sock" tcp port 8080 2>/dev/null &
cap=$!
sleep 0.5
for i in 1 2 3 4 5 6; do ip netns exec $P-host-c-p1 curl -s -m 5 http://10.244.1.2:8080/ >/dev/null; done
wait $cap || true
run tcpdump -nr "$STATE_DIR/web.pcap" 2>/dev/null | head -12
say "open it in Wireshark, or: tshark -r $STATE_DIR/web.pcap  (--underlay captures show VXLAN, VNI 42)"

bold "8. Counters and metrics of host-a"
run ip netns exec $P-host-a node bin/tapestry stats --socket "$STATE_DIR/host-a.sock"
say "Prometheus metrics (curl 127.0.0.1:9464/metrics in the host's namespace), a few of them:"
ip netns exec $P-host-a curl -s http://127.0.0.1:9464/metrics | grep -E '^tapestry_(frames_total|drops_total|fdb_entries)' | head -8 | sed 's/^/     /'

if [ $KEEP = 1 ]; then
  bold "Left running (--keep). Explore:"
  say "ip netns exec $P-host-a-p1 ping 10.244.2.3"
  say "ip netns exec $P-host-a node bin/tapestry fdb show --socket $STATE_DIR/host-a.sock"
  say "Clean up: npm run clean:netns && rm -rf $STATE_DIR"
else
  bold "Done: cleaning up (run with --keep to leave it running)"
fi
