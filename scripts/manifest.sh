# The study manifest reader (sourced by scripts/study.sh): the manifest is read, never executed.
# Lines are KEY=VALUE (a value may be "double quoted"), comments (#) or blank; anything else, an
# unknown or repeated key, a missing key or a value of the wrong form is an error naming the
# file and line, exit 1.
MANIFEST_INTEGERS="SEED PER_CONFIG SHAPE_PER_CONFIG SIZE BATCH STEPS STOP_AT VAL_EVERY VAL_PROBLEMS STATE_EVERY MASK_STEP_CAP MASK_EVAL_EVERY MASK_JOBS MASK_THREADS"
MANIFEST_NUMBERS="LR WEIGHT_DECAY CLIP_GRAD_NORM MASK_ALPHA MASK_LR"
MANIFEST_WORDS="SHAPES VARIANT MILESTONES MASK_SEEDS ALPHA_CANDIDATES ALPHA_SHAPE"
MANIFEST_KEYS="$MANIFEST_INTEGERS $MANIFEST_NUMBERS $MANIFEST_WORDS"

manifest_fail() { echo "manifest: $*" >&2; exit 1; }

read_manifest() {
  local file=$1 n=0 line key value seen=" "
  [ -f "$file" ] || manifest_fail "$file: not a file"
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*# ]] && continue
    if [[ ! "$line" =~ ^([A-Z_]+)=(\"[a-z0-9,. +-]*\"|[A-Za-z0-9,.+-]*)$ ]]; then
      manifest_fail "$file:$n: not a KEY=VALUE line: $line"
    fi
    key=${BASH_REMATCH[1]}; value=${BASH_REMATCH[2]}; value=${value#\"}; value=${value%\"}
    case " $MANIFEST_KEYS " in *" $key "*) ;; *) manifest_fail "$file:$n: unknown key $key" ;; esac
    case "$seen" in *" $key "*) manifest_fail "$file:$n: $key given twice" ;; esac
    seen="$seen$key "
    case " $MANIFEST_INTEGERS " in
      *" $key "*) [[ "$value" =~ ^[0-9]+$ ]] || manifest_fail "$file:$n: $key=$value is not a whole number" ;;
    esac
    case " $MANIFEST_NUMBERS " in
      *" $key "*) [[ "$value" =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
        manifest_fail "$file:$n: $key=$value is not a number" ;;
    esac
    printf -v "$key" '%s' "$value"
  done < "$file"
  for key in $MANIFEST_KEYS; do
    case "$seen" in *" $key "*) ;; *) manifest_fail "$file: $key is missing" ;; esac
  done
  [[ "$SHAPES" =~ ^[a-z]+( [a-z]+)*$ ]] || manifest_fail "$file: SHAPES='$SHAPES' is not a list of names"
  [[ "$VARIANT" =~ ^(official|seed)$ ]] || manifest_fail "$file: VARIANT='$VARIANT' is not official or seed"
  [[ "$MILESTONES" =~ ^[0-9]+(,[0-9]+)*$ ]] || manifest_fail "$file: MILESTONES='$MILESTONES' is not a list of percents"
  [ "$MASK_THREADS" -ge 1 ] || manifest_fail "$file: MASK_THREADS=$MASK_THREADS must be at least 1"
  [[ "$MASK_SEEDS" =~ ^[0-9]+( [0-9]+)*$ ]] || manifest_fail "$file: MASK_SEEDS='$MASK_SEEDS' is not a list of seeds"
}

# Prints the manifest's values, one KEY=VALUE per line in a fixed order.
print_manifest() {
  local key
  for key in $MANIFEST_KEYS; do printf '%s=%s\n' "$key" "${!key}"; done
}
