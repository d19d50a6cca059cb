#!/usr/bin/env bash
# Pins what `cargo expand` prints for the quickstart's cached function and
# what the attribute generates next to it: the two invalidation companions,
# the warming companion, the uncached body and the refresh.
#   scripts/expansion.sh           print the expansion
#   scripts/expansion.sh --check   fail if it differs from the snapshot
#   scripts/expansion.sh --update  rewrite the snapshot
set -euo pipefail
cd "$(dirname "$0")/.."
snapshot=tests/expand/evaluate_policy.expanded.rs
actual=$(for item in evaluate_policy invalidate_evaluate_policy invalidate_all_evaluate_policy warm_entry_evaluate_policy evaluate_policy_uncached refresh_evaluate_policy; do
  cargo expand --quiet --example quickstart "$item" 2>/dev/null
done)
case "${1:-}" in
  --update) printf '%s\n' "$actual" > "$snapshot"; echo "updated $snapshot ($(wc -l < "$snapshot") lines)";;
  --check)
    if ! diff -u "$snapshot" <(printf '%s\n' "$actual"); then
      echo "the expansion changed: review it, then run scripts/expansion.sh --update"; exit 1
    fi
    echo "expansion matches $snapshot ($(wc -l < "$snapshot") lines)";;
  *) printf '%s\n' "$actual";;
esac
