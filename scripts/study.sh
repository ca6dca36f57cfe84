#!/usr/bin/env bash
# The study run (`make study`): data → pre-training → test readings of the milestones → the α
# stage → masks → RESULTS.md, sized by datasets/study/manifest.env. Every stage resumes where it stopped: the data
# is generated on the fly from the seed (only generator.json is written), training continues
# from model_ckpts/study/last.* (weights, Adam moments, log; the data order is replayed from the
# seed), a checkpoint with a test reading is not re-read, a finished mask is skipped.
# Run it in the background at low priority:  nice -n 19 make study > study.log 2>&1 &
# and commit model_ckpts/study/ now and then: another machine continues from the last commit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/manifest.sh
source scripts/study_jobs.sh
read_manifest datasets/study/manifest.env
stage="${1:-all}"
if [ "$stage" = check ]; then print_manifest; exit 0; fi
# A copy of the binary, so rebuilding the tree while the run goes on cannot change it.
avr="$AVR_CACHE/study-bin/avr"
mkdir -p "$(dirname "$avr")"
cp "$CARGO_TARGET_DIR/debug/avr" "$avr.tmp" && mv "$avr.tmp" "$avr"
data=datasets/study; ckpts=model_ckpts/study; masks=binary_masks/study
say() { echo "[study $(date -u +%FT%TZ)] $*"; }

data_stage() {
  "$avr" generate --on-the-fly --out "$data/originals" --per-config "$PER_CONFIG" --seed "$SEED" --json
  for s in $SHAPES; do
    "$avr" generate --on-the-fly --out "$data/$s" --preset "$s" --per-config "$SHAPE_PER_CONFIG" --seed "$SEED" --json
  done
}

train_stage() {
  say "pre-training $VARIANT @$SIZE: $STEPS steps at most, stop at $STOP_AT %"
  "$avr" train --data "$data/originals" --variant "$VARIANT" --size "$SIZE" --steps "$STEPS" \
    --batch "$BATCH" --lr "$LR" --weight-decay "$WEIGHT_DECAY" --clip-grad-norm "$CLIP_GRAD_NORM" \
    --val-every "$VAL_EVERY" --val-problems "$VAL_PROBLEMS" --milestones "$MILESTONES" \
    --stop-at "$STOP_AT" --seed "$SEED" --out "$ckpts" --state-every "$STATE_EVERY" --resume --json
}

# Each milestone re-evaluated on the held-out test split, which no selection touched.
test_stage() {
  for ck in "$ckpts"/scl_*.safetensors; do
    [ -e "$ck" ] || continue
    if grep -q '"test"' "${ck%.safetensors}.json"; then continue; fi
    say "test reading of $(basename "$ck")"
    "$avr" eval --ckpt "$ck" --data "$data/originals" --split test --record --json > /dev/null
  done
}

# The α stage: one mask per candidate α on the best milestone (highest validation reading),
# one shape, seed 0; `avr mask choose-alpha` applies the rule (the largest α whose validation
# task accuracy is within 5 points of the smallest α's) and writes binary_masks/study/alpha.json,
# which the masks stage then reads. The α masks live in binary_masks/study-alpha/ (not beside
# the study's masks, which are read per checkpoint folder). Finished α masks are skipped.
alpha_stage() {
  local ck; ck=$(ls "$ckpts"/scl_*.safetensors | sort -V | tail -n 1)
  local stem; stem=$(basename "$ck" .safetensors)
  alpha_masks_and_rule "$ck" "$masks-alpha/$stem" "$masks/alpha.json" $ALPHA_CANDIDATES
}

# One mask per α (the remaining arguments) on checkpoint $1, shape ALPHA_SHAPE, seed 0, into
# folder $2 (finished masks skipped), then the α rule on them into the record $3.
alpha_masks_and_rule() {
  local ck=$1 dir=$2 record=$3; shift 3
  local outs=() a
  for a in "$@"; do
    local out="$dir/$ALPHA_SHAPE-a$a.safetensors"
    outs+=("$out")
    [ -f "$out" ] && continue
    say "α masks: $(basename "$ck" .safetensors)/$ALPHA_SHAPE α = $a into $dir"
    "$avr" mask train --ckpt "$ck" --task "$data/$ALPHA_SHAPE" --control "$data/originals" \
      --name "$ALPHA_SHAPE-a$a" --alpha "$a" --steps "$MASK_STEP_CAP" --lr "$MASK_LR" \
      --eval-every "$MASK_EVAL_EVERY" --seed 0 --out "$out" --json > /dev/null
  done
  "$avr" mask choose-alpha "${outs[@]}" --out "$record" --json
}

# The α check: the α stage chose on 3,000-step masks. Here the smallest candidate, the choice
# and its two neighbours are trained to the convergence rule (cap MASK_STEP_CAP) on the same
# milestone, shape and seed, and the rule is applied again to the settled masks
# (binary_masks/study-alpha-settled/<milestone>/alpha.json). The study keeps its α unless this
# check picks another; then that is a finding to report, not a silent switch.
alpha_check_stage() {
  local ck; ck=$(ls "$ckpts"/scl_*.safetensors | sort -V | tail -n 1)
  local stem; stem=$(basename "$ck" .safetensors)
  local chosen; chosen=$(study_alpha)
  local candidates=($ALPHA_CANDIDATES) picked=() i j
  for i in "${!candidates[@]}"; do
    python3 -c 'import sys; sys.exit(abs(float(sys.argv[1]) / float(sys.argv[2]) - 1) > 1e-6)' \
      "${candidates[$i]}" "$chosen" || continue
    # The smallest α (the rule's reference), the choice and its neighbours, each once.
    for j in 0 $((i - 1)) "$i" $((i + 1)); do
      if [ "$j" -ge 0 ] && [ "$j" -lt ${#candidates[@]} ] && [[ " ${picked[*]} " != *" ${candidates[$j]} "* ]]; then
        picked+=("${candidates[$j]}")
      fi
    done
  done
  [ ${#picked[@]} -gt 0 ] || { echo "α check: $chosen is not among ALPHA_CANDIDATES" >&2; exit 2; }
  local dir="$masks-alpha-settled/$stem"
  alpha_masks_and_rule "$ck" "$dir" "$dir/alpha.json" "${picked[@]}"
}

# The study's one α: the α stage's choice once it has run, else the manifest's MASK_ALPHA.
study_alpha() {
  if [ -f "$masks/alpha.json" ]; then
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["chosen_alpha"])' "$masks/alpha.json"
  else
    echo "$MASK_ALPHA"
  fi
}

# Every milestone × (each shape + the control pooled over all shapes) × seed; a finished mask
# (its logits exist: moved into place after the sidecar) is skipped, an unfinished one resumes
# from its `.resume` state (logits, Adam moments, log). MASK_JOBS masks run at once (0: one per
# core), each on MASK_THREADS libtorch threads.
masks_stage() {
  local alpha; alpha=$(study_alpha)
  local width=$MASK_JOBS; [ "$width" -gt 0 ] || width=$(nproc)
  say "masks with α = $alpha, $width at once on $MASK_THREADS thread(s) each"
  local list; list=$(mask_jobs)
  [ -n "$list" ] || { say "masks: none left"; return 0; }
  STUDY_ALPHA=$alpha pool_run "$width" <<< "$list"
}

# One mask (the pool's job): checkpoint $1, task $2 (a shape or all-shapes), seed $3.
pool_job() {
  local ck=$1 task=$2 r=$3 stem; stem=$(basename "$ck" .safetensors)
  local dirs="$data/$task"
  if [ "$task" = all-shapes ]; then
    dirs=$(for s in $SHAPES; do printf '%s,' "$data/$s"; done); dirs=${dirs%,}
  fi
  say "mask $stem/$task seed $r"
  AVR_THREADS=$MASK_THREADS "$avr" mask train --ckpt "$ck" --task "$dirs" --control "$data/originals" \
    --name "$task-s$r" --alpha "$STUDY_ALPHA" --steps "$MASK_STEP_CAP" --lr "$MASK_LR" \
    --eval-every "$MASK_EVAL_EVERY" --seed "$r" --out "$masks/$stem/$task-s$r.safetensors" \
    --json > /dev/null
  say "mask $stem/$task seed $r: done"
}

# RESULTS.md from the masks finished so far (each run of it says how many there are), its SVG
# figures in binary_masks/study/figures/.
report_stage() {
  if ! ls "$masks"/*/*.safetensors > /dev/null 2>&1; then
    say "report: no study masks yet"; return 0
  fi
  "$avr" results --masks "$masks" --out RESULTS.md --figures "$masks/figures" --json
}

case "$stage" in
  data) data_stage ;;
  train) data_stage; train_stage ;;
  test) test_stage ;;
  alpha) alpha_stage ;;
  alpha-check) alpha_check_stage ;;
  masks) masks_stage ;;
  report) report_stage ;;
  all) data_stage; train_stage; test_stage; alpha_stage; masks_stage; report_stage ;;
  *) echo "usage: scripts/study.sh [check|data|train|test|alpha|alpha-check|masks|report|all]" >&2; exit 2 ;;
esac
say "done: $stage"
