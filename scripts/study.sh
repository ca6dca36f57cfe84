#!/usr/bin/env bash
# The study run (`make study`): data → pre-training → test readings of the milestones → the α
# stage → masks → ablations → RESULTS.md, sized by datasets/study/manifest.env. Every stage resumes where it stopped: the data
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
  local ck; ck=$(alpha_milestone)
  local stem; stem=$(basename "$ck" .safetensors)
  alpha_masks_and_rule "$ck" "$masks-alpha/$stem" "$masks/alpha.json" $ALPHA_CANDIDATES
}

# One mask per α (the remaining arguments) on checkpoint $1, shape ALPHA_SHAPE, seed 0, into
# folder $2 (finished masks skipped; MASK_JOBS at once), then the α rule on them into the record
# $3. A mask with exactly these settings that the masks stage already trained (REUSE_ALPHA, with
# its path in REUSE_MASK) is read from there, not trained again.
alpha_masks_and_rule() {
  local ck=$1 dir=$2 record=$3; shift 3
  local outs=() list="" a
  for a in "$@"; do
    if [ -n "${REUSE_ALPHA:-}" ] && same_number "$a" "$REUSE_ALPHA" && [ -f "$REUSE_MASK" ]; then
      say "α masks: α = $a is the masks stage's $REUSE_MASK"
      outs+=("$REUSE_MASK"); continue
    fi
    local out="$dir/$ALPHA_SHAPE-a$a.safetensors"
    outs+=("$out")
    [ -f "$out" ] || list+="$ck $a $out"$'\n'
  done
  [ -z "$list" ] || pool_run "$(mask_pool_width)" alpha_mask_job <<< "${list%$'\n'}"
  "$avr" mask choose-alpha "${outs[@]}" --out "$record" --json
}

# One α mask (a pool job): checkpoint $1, α $2, into $3.
alpha_mask_job() {
  local ck=$1 a=$2 out=$3
  say "α masks: $(basename "$ck" .safetensors)/$ALPHA_SHAPE α = $a into $(dirname "$out")"
  AVR_THREADS=$MASK_THREADS "$avr" mask train --ckpt "$ck" --task "$data/$ALPHA_SHAPE" \
    --control "$data/originals" --name "$ALPHA_SHAPE-a$a" --alpha "$a" --steps "$MASK_STEP_CAP" \
    --lr "$MASK_LR" --eval-every "$MASK_EVAL_EVERY" --seed 0 --out "$out" --json > /dev/null
}

# Whether two numbers written differently (1e-05, 1e-5) are the same.
same_number() {
  python3 -c 'import sys; sys.exit(abs(float(sys.argv[1]) / float(sys.argv[2]) - 1) > 1e-6)' "$1" "$2"
}

# The α check: the α stage chose on 3,000-step masks. Here the smallest candidate, the choice
# and its two neighbours are read at the convergence rule (cap MASK_STEP_CAP) on the α stage's
# milestone, shape and seed (the choice's mask is the masks stage's own; the others are trained
# through the pool), and the rule is applied again to the settled masks
# (binary_masks/study-alpha-settled/<milestone>/alpha.json). The study keeps its α unless this
# check picks another; then that is a finding to report, not a silent switch.
alpha_check_stage() {
  local ck; ck=$(alpha_milestone)
  local stem; stem=$(basename "$ck" .safetensors)
  local chosen; chosen=$(study_alpha)
  local candidates=($ALPHA_CANDIDATES) picked=() i j
  for i in "${!candidates[@]}"; do
    same_number "${candidates[$i]}" "$chosen" || continue
    # The smallest α (the rule's reference), the choice and its neighbours, each once.
    for j in 0 $((i - 1)) "$i" $((i + 1)); do
      if [ "$j" -ge 0 ] && [ "$j" -lt ${#candidates[@]} ] && [[ " ${picked[*]} " != *" ${candidates[$j]} "* ]]; then
        picked+=("${candidates[$j]}")
      fi
    done
  done
  [ ${#picked[@]} -gt 0 ] || { echo "α check: $chosen is not among ALPHA_CANDIDATES" >&2; exit 2; }
  local dir="$masks-alpha-settled/$stem"
  # The chosen α at seed 0 on this milestone and shape is a study mask, trained to the same rule.
  REUSE_ALPHA=$chosen REUSE_MASK="$masks/$stem/$ALPHA_SHAPE-s0.safetensors" \
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
  STUDY_ALPHA=$(study_alpha)
  say "masks with α = $STUDY_ALPHA, $(mask_pool_width) at once on $MASK_THREADS thread(s) each"
  local list; list=$(mask_jobs)
  [ -n "$list" ] || { say "masks: none left"; return 0; }
  pool_run "$(mask_pool_width)" study_mask_job <<< "$list"
}

# How many masks run at once: MASK_JOBS, or one per core when it is 0.
mask_pool_width() {
  if [ "$MASK_JOBS" -gt 0 ]; then echo "$MASK_JOBS"; else nproc; fi
}

# One study mask (a pool job): checkpoint $1, task $2 (a shape or all-shapes), seed $3.
study_mask_job() {
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

# Each finished shape mask's ablation (`avr mask ablate`: the module removed against as many
# weights removed anywhere and per tensor, plus the collapse probe; ≈ 10 s a mask) into
# `<mask>.ablation.json` beside it. Current records are kept; older formats are measured again.
# The pooled control is left out: R4 is about shape modules. A failure is reported and skipped,
# so RESULTS.md is still written.
ablate_stage() {
  local m stem task
  for m in "$masks"/*/*.safetensors; do
    [ -e "$m" ] || continue
    stem=$(basename "$(dirname "$m")"); task=$(basename "$m" .safetensors); task=${task%-s*}
    [ "$task" = all-shapes ] && continue
    grep -qs '"format": 2' "${m%.safetensors}.ablation.json" && continue
    say "ablation of $stem/$(basename "$m" .safetensors)"
    "$avr" mask ablate --ckpt "$ckpts/$stem.safetensors" --task "$data/$task" --mask "$m" \
      --json > /dev/null || say "ablation of $stem/$(basename "$m" .safetensors) failed"
  done
}

# RESULTS.md from the masks finished so far (each run of it says how many there are), its SVG
# figures in binary_masks/study/figures/.
report_stage() {
  if ! ls "$masks"/*/*.safetensors > /dev/null 2>&1; then
    say "report: no study masks yet"; return 0
  fi
  ablate_stage
  "$avr" results --masks "$masks" --out RESULTS.md --figures "$masks/figures" --json
}

case "$stage" in
  data) data_stage ;;
  train) data_stage; train_stage ;;
  # Every stage that reads the data writes its generator.json files first (seconds,
  # idempotent): a fresh clone holds only the manifest.
  test) data_stage; test_stage ;;
  alpha) data_stage; alpha_stage ;;
  alpha-check) data_stage; alpha_check_stage ;;
  masks) data_stage; masks_stage ;;
  ablate) data_stage; ablate_stage ;;
  report) data_stage; report_stage ;;
  all) data_stage; train_stage; test_stage; alpha_stage; masks_stage; report_stage ;;
  *) echo "usage: scripts/study.sh [check|data|train|test|alpha|alpha-check|masks|ablate|report|all]" >&2; exit 2 ;;
esac
say "done: $stage"
