#!/usr/bin/env bash
# Runs each test tier (a make target), keeps going after a failure so one run shows
# every broken tier, prints the time each took, and fails if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
for tier in "$@"; do
  start=$(date +%s)
  echo "=== $tier"
  if ! make --no-print-directory "$tier"; then
    failed+=("$tier")
  fi
  echo "=== $tier took $(( $(date +%s) - start )) s"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED tiers: ${failed[*]}"
  exit 1
fi
echo "all tiers passed: $*"
