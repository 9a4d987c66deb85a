#!/usr/bin/env bash
# Every output of `kdbench report` (each format) and `kdbench compare` (md, json) on every
# committed record set, written into one folder per call: run it before and after a change
# that should move no output and diff the two folders (`diff -r BEFORE AFTER`).
# Usage: scripts/outputs.sh OUT_DIR   (kdbench from the current environment)
set -euo pipefail
out=${1:?usage: scripts/outputs.sh OUT_DIR}
mkdir -p "$out"
sets=(results/baseline.jsonl results/baseline-fashion-gate.jsonl results/fashion
      results/gate/seeds-3-5.jsonl results/gate/seeds-0-2-threads2.jsonl)
for s in "${sets[@]}"; do
    name=$(basename "$s" .jsonl)
    for fmt in md csv json latex html; do
        kdbench report "$s" --format "$fmt" > "$out/report-$name.$fmt" 2>&1 || echo "exit $?" >> "$out/report-$name.$fmt"
    done
done
pairs=("results/baseline.jsonl results/baseline.jsonl"
       "results/baseline-fashion-gate.jsonl results/gate/seeds-3-5.jsonl"
       "results/baseline-fashion-gate.jsonl results/gate/seeds-0-2-threads2.jsonl")
for p in "${pairs[@]}"; do
    read -r base cur <<< "$p"
    name="$(basename "$base" .jsonl)-vs-$(basename "$cur" .jsonl)"
    for fmt in md json; do
        kdbench compare "$base" "$cur" --format "$fmt" --config results/gate/gate.toml \
            > "$out/compare-$name.$fmt" 2>&1 || echo "exit $?" >> "$out/compare-$name.$fmt"
    done
done
