#!/usr/bin/env bash
# The CLI half of `make demo`: the study's checkpoint and SCL_90 masks analysed headless.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-report}/cli"
mkdir -p "$out"
avr="$CARGO_TARGET_DIR/debug/avr"
fx="${AVR_FIXTURES:-../shared/fixtures}"
[ -d "$fx" ] || fx=/work/shared/fixtures
ckpt="$fx/seed/checkpoint/SCL_pretrain_80.ckpt"
m="$fx/seed/binary_masks/SCL_90"
masks=("$m"/circles/* "$m"/triangles/* "$m"/pentagon/* "$m"/hexagon/* "$m"/squares/*)
{
  echo "== study checkpoint on the fixture 'originals' set (the checkpoint feeds its panels transposed)"
  "$avr" eval --ckpt "$ckpt" --data "$fx/seed/datasets/originals"
  echo; echo "== SCL_90 masks"
  "$avr" mask stats "${masks[@]}" --null 200
  echo; echo "== sharing matrix (IoMin %, preprocessed; α differs between these masks) against a count-matched null"
  "$avr" mask sharing "${masks[@]}" --preprocess --allow-mixed-settings --null 1000 --svg "$out/sharing_SCL_90.svg"
  echo; echo "== the same, each mask binarised by sampling (mean of 20 samples; the study's figures used one)"
  "$avr" mask sharing "${masks[@]}" --preprocess --allow-mixed-settings --null 1000 --binarize sample --samples 20
  echo; echo "== graph modularity of the vision conv stack (k = 4, 50 shuffles)"
  "$avr" modularity --ckpt "$ckpt" --k 4 --shuffles 50
} | tee "$out/summary.txt"
