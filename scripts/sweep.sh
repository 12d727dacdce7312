#!/usr/bin/env bash
# Removes what earlier test or demo runs left behind, by name prefix only:
# network namespaces and links named tpy* (tests) and tdemo* (the demo),
# and the processes still running inside those namespaces.
set -u
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(tpy|tdemo)'); do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null && echo "removed netns $ns"
done
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(tpy|tdemo)'); do
  ip link del "$l" 2>/dev/null && echo "removed link $l"
done
exit 0
