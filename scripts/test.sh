#!/usr/bin/env bash
# Runs the test suite with node's test runner: unit tests, then end-to-end tests
# in network namespaces (need root), then the data-moving e2e suites once more with
# the agents' offloads off. Usage: scripts/test.sh [unit|e2e] [filter]
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
filter="${2:-}"
files=()
if [ "$which" = all ] || [ "$which" = unit ]; then
  while IFS= read -r f; do files+=("$f"); done < <(find dist/test/unit -name '*.test.js' 2>/dev/null | sort)
fi
if [ "$which" = all ] || [ "$which" = e2e ]; then
  while IFS= read -r f; do files+=("$f"); done < <(find dist/test/e2e -name '*.test.js' 2>/dev/null | sort)
fi
if [ -n "$filter" ]; then
  kept=(); for f in "${files[@]}"; do case "$f" in *"$filter"*) kept+=("$f");; esac; done; files=("${kept[@]}")
fi
[ ${#files[@]} -gt 0 ] || { echo "no test files found (did the build run?)" >&2; exit 1; }
status=0
node --test --test-concurrency=1 --test-timeout=300000 "${files[@]}" || status=$?
# The suites that move data between pods, again with every agent's offloads off
# (no TSO/GSO/GRO: the plain path must pass the same tests). test/harness/overlay.ts
# reads TAPESTRY_E2E_OFFLOADS.
if { [ "$which" = all ] || [ "$which" = e2e ]; } && [ -z "$filter" ]; then
  off=()
  for t in overlay-two-hosts overlay-kernel-interop overlay-broadcast-three-hosts overlay-vni-isolation overlay-udp-gro overlay-workers \
           svc-bulk svc-balancing svc-udp-dns svc-reject-hairpin observe-capture; do
    off+=("dist/test/e2e/$t.test.js")
  done
  echo "# e2e again with offloads off: ${#off[@]} suites" >&2
  TAPESTRY_E2E_OFFLOADS=off node --test --test-concurrency=1 --test-timeout=300000 "${off[@]}" || status=$?
fi
exit $status
