#!/usr/bin/env bash
# Proves the headless runner fails when it should: every notebook under tests/notebooks that
# contains a fault (panic, top-level `?` error, compile error, panic with evcxr's default
# settings, output on stderr that Jupyter paints red) must make scripts/run_notebooks.py exit 1 and name the fault; a clean one must pass.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
runner="python scripts/run_notebooks.py"
status=0
expect() { # expect <exit code> <notebook> <text that the report must contain>
  local want=$1 nb=$2 text=$3 out code
  out=$($runner "$nb" 2>&1); code=$?
  if [ "$code" -ne "$want" ] || ! grep -qF -- "$text" <<<"$out"; then
    echo "runner test FAILED for $nb: exit $code (want $want), report must contain '$text':"; echo "$out"; status=1
  else
    echo "runner test ok: $nb -> exit $code, reports '$text'"
  fi
}
expect 1 tests/notebooks/panics.ipynb "deliberate panic"
expect 1 tests/notebooks/question_mark.ipynb "top-level \`?\`"
expect 1 tests/notebooks/compile_error.ipynb "mismatched types"
expect 1 tests/notebooks/no_config/panics_default_settings.ipynb "panicked at"
expect 1 tests/notebooks/stderr.ipynb "stderr output"
expect 0 tests/notebooks/passes.ipynb "ok"

# A failed run leaves the notebook already in --out untouched and writes NAME.failed.ipynb.
out_dir=$(mktemp -d)
printf '%s\n' '{"earlier": "outputs"}' > "$out_dir/panics.ipynb"
$runner --out "$out_dir" tests/notebooks/panics.ipynb > /dev/null 2>&1
if grep -qF '"earlier": "outputs"' "$out_dir/panics.ipynb" && grep -qF "deliberate panic" "$out_dir/panics.failed.ipynb"; then
  echo "runner test ok: a failed run keeps $out_dir/panics.ipynb and writes panics.failed.ipynb"
else
  echo "runner test FAILED: a failed run replaced the earlier outputs or wrote no .failed copy"; ls -l "$out_dir"; status=1
fi
# A later clean run removes the failed copy it supersedes.
touch "$out_dir/passes.failed.ipynb"
$runner --out "$out_dir" tests/notebooks/passes.ipynb > /dev/null 2>&1
if [ -f "$out_dir/passes.ipynb" ] && [ ! -e "$out_dir/passes.failed.ipynb" ]; then
  echo "runner test ok: a clean run removes the stale passes.failed.ipynb"
else
  echo "runner test FAILED: a clean run left a stale .failed copy or wrote no notebook"; ls -l "$out_dir"; status=1
fi
rm -rf "$out_dir"
exit $status
