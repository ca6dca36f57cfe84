#!/usr/bin/env bash
# Training and mask-training throughput, all configurations side by side in one run, each
# repeated R times in turn (the VM's speed drifts) — the figures of BENCHMARKS.md.
# Usage: scripts/bench_throughput.sh [R=3] [STEPS=20]; prints a markdown table.
set -euo pipefail
. "$(dirname "$0")/env.sh"
repeats="${1:-3}"
steps="${2:-20}"
avr="$CARGO_TARGET_DIR/debug/avr"
configs=(
  "train --variant official --size 80"
  "train --variant seed --size 160"
  "mask --variant official --size 80 --samples 4"
  "mask --variant official --size 80 --samples 4 --separate"
  "mask --variant seed --size 160 --samples 4"
  "mask --variant seed --size 160 --samples 4 --separate"
)
declare -A runs
for _ in $(seq "$repeats"); do
  for c in "${configs[@]}"; do
    # shellcheck disable=SC2086
    v=$("$avr" bench $c --batch 32 --steps "$steps" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["problems_per_s"], 1))')
    runs[$c]="${runs[$c]:-} $v"
  done
done
echo "| bench (batch 32, $steps timed steps, median step) | problems/s, median of $repeats runs | all runs |"
echo "|---|---|---|"
for c in "${configs[@]}"; do
  median=$(echo "${runs[$c]}" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
  echo "| \`avr bench $c\` | **$median** |${runs[$c]} |"
done
