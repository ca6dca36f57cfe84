#!/usr/bin/env bash
# Two study masks one after another on all cores, against the same two masks at once on one
# thread each (the masks stage's pool, scripts/study_jobs.sh): wall time per round, in turn.
# Usage: scripts/bench_mask_pool.sh [ROUNDS] [STEPS]   (default 2 rounds of 400 steps). It needs
# the shipped best milestone and the study's on-the-fly sets (make study STAGE=data).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
rounds=${1:-2} steps=${2:-400}
avr="$CARGO_TARGET_DIR/debug/avr"
ckpt=model_ckpts/study/scl_official_val80.2.safetensors
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
one() { # threads seed shape
  AVR_THREADS=$1 "$avr" mask train --ckpt "$ckpt" --task "datasets/study/$3" \
    --control datasets/study/originals --name "$3-$2" --alpha 1e-5 --steps "$steps" --lr 0.01 \
    --eval-every 250 --seed "$2" --out "$out/$1/$3-$2.safetensors" --json > /dev/null 2>&1
}
cores=$(nproc)
for round in $(seq "$rounds"); do
  rm -rf "$out"/*
  t0=$(date +%s.%N); one "$cores" 7 circles; one "$cores" 8 squares; t1=$(date +%s.%N)
  one 1 7 circles & one 1 8 squares & wait; t2=$(date +%s.%N)
  python3 -c 'import sys; a, b, c = map(float, sys.argv[2:])
print(f"round {sys.argv[1]}: one after another on all cores {b - a:.1f} s, "
      f"two at once on one thread {c - b:.1f} s: {(b - a) / (c - b):.2f}x")' "$round" "$t0" "$t1" "$t2"
done
