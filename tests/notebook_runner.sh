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
exit $status
