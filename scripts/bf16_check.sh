#!/usr/bin/env bash
# The bf16 pre-training check (`make bf16-check`): the same fixed 2,000-step study-style run
# (official SCL @80 on the study's originals, lr 1e-3, grad-norm clip 0.5, batch 32, seed 0,
# validation every 500 steps on 2,100 problems) in f32 and in bf16, one after the other; each
# run's metrics.csv and wall time land in OUT (default $AVR_CACHE/bf16-check); a killed run
# resumes. BENCHMARKS.md compares the two validation readings (n = 2,100 each).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
out="${1:-$AVR_CACHE/bf16-check}"
avr="$CARGO_TARGET_DIR/debug/avr"
mkdir -p "$out"
"$avr" generate --on-the-fly --out datasets/study/originals --per-config 10000 --seed 0 --json > /dev/null
for precision in f32 bf16; do
  [ -f "$out/$precision/done.json" ] && continue
  mkdir -p "$out/$precision"
  start=$(date +%s.%N)
  "$avr" train --data datasets/study/originals --variant official --size 80 --steps 2000 --batch 32 \
    --lr 0.001 --weight-decay 0 --clip-grad-norm 0.5 --val-every 500 --val-problems 2100 \
    --milestones 101 --seed 0 --out "$out/$precision" --state-every 500 --resume \
    --precision "$precision" --json > "$out/$precision/summary.json.tmp" 2> "$out/$precision.log"
  end=$(date +%s.%N)
  python3 -c "import json,sys; print(json.dumps({'precision': '$precision', 'seconds': $end - $start}))" > "$out/$precision/done.json"
done
echo "bf16 check: $out/{f32,bf16}/metrics.csv"
