#!/usr/bin/env bash
# Runs the test suite with node's test runner: unit tests, then end-to-end tests
# in network namespaces (need root). Usage: scripts/test.sh [unit|e2e] [filter]
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
exec node --test --test-concurrency=1 --test-timeout=300000 "${files[@]}"
