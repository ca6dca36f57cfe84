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
# The verdict: each validation reading with its 95 % Wilson interval, and at the last step a
# two-sided two-proportion z-test of bf16 against f32 (n = 2,100 each).
python3 - "$out" <<'PY' | tee "$out/comparison.md"
import csv, json, math, sys
out = sys.argv[1]
N = 2100
def readings(p):
    with open(f"{out}/{p}/metrics.csv") as f:
        return {int(r["step"]): float(r["val_accuracy"]) for r in csv.DictReader(f) if r["val_accuracy"]}
def wilson(acc, n=N, z=1.96):
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)
f32, bf16 = readings("f32"), readings("bf16")
secs = {p: json.load(open(f"{out}/{p}/done.json"))["seconds"] for p in ("f32", "bf16")}
print(f"| step | f32 validation (n = {N}) | bf16 validation (n = {N}) |")
print("|---|---|---|")
for step in sorted(f32):
    cells = [f"{100 * r[step]:.1f} % [{wilson(r[step])[0]:.1f}, {wilson(r[step])[1]:.1f}]" for r in (f32, bf16)]
    print(f"| {step:,} | {cells[0]} | {cells[1]} |")
last = max(f32)
a, b = f32[last], bf16[last]
pooled = (a + b) / 2
z = (b - a) / math.sqrt(pooled * (1 - pooled) * 2 / N)
p = math.erfc(abs(z) / math.sqrt(2))
verdict = "no significant difference" if p >= 0.05 else ("bf16 significantly higher" if z > 0 else "bf16 significantly lower")
print()
print(f"At step {last:,}: bf16 {100 * b:.1f} % vs f32 {100 * a:.1f} % (difference {100 * (b - a):+.1f} points, two-proportion z = {z:.2f}, p = {p:.2f}): {verdict}.")
print(f"Wall time of the 2,000 steps with their validations: f32 {secs['f32'] / 60:.1f} min, bf16 {secs['bf16'] / 60:.1f} min.")
PY
