#!/usr/bin/env bash
# Idempotent machine set-up: Python venv with libtorch 2.13.0 from PyPI and the Jupyter
# runners, rust-src, the evcxr_jupyter kernel (built once, cached), and the `rust`
# kernelspec with the environment that libtorch needs. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
mkdir -p "$AVR_CACHE"
log() { printf '[setup] %s\n' "$*" >&2; }

# --- Python: venv with the CPU footprint of torch==2.13.0 ------------------------------------
# `--no-deps torch` + cudart + cupti is all tch needs (libtorch_cpu.so NEEDS libcudart.so.13 and
# libcupti.so.13); the full wheel set is ~4.7 GB. On a GPU machine install the full wheel
# (`make setup-gpu`) so libtorch_cuda.so and its CUDA stack are present.
stamp="$AVR_VENV/.avr-installed-torch$AVR_TORCH_VERSION-v1"
if [ ! -f "$stamp" ]; then
  log "creating $AVR_VENV (torch==$AVR_TORCH_VERSION from PyPI, CPU footprint)"
  python3 -m venv "$AVR_VENV"
  "$AVR_VENV/bin/pip" install -q --no-deps "torch==$AVR_TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  "$AVR_VENV/bin/pip" install -q nbclient==0.11.0 nbconvert==7.17.2 jupyterlab==4.6.6 numpy==2.4.6
  touch "$stamp"
fi
# scikit-learn's bundled 8x8 handwritten digits (the toumei experiments' real digits): the wheel
# only, --no-deps; nothing imports sklearn, the crate reads sklearn/datasets/data/digits.csv.gz.
if [ ! -f "$AVR_DIGITS" ]; then
  log "installing scikit-learn==$AVR_SKLEARN_VERSION (--no-deps) for its bundled digits"
  "$AVR_VENV/bin/pip" install -q --no-deps "scikit-learn==$AVR_SKLEARN_VERSION"
fi
[ -d "$LIBTORCH/include" ] && [ -f "$LIBTORCH/lib/libtorch_cpu.so" ] || { log "libtorch missing under $LIBTORCH"; exit 1; }
ln -sfn "$AVR_VENV" .venv

# --- Rust: rust-src (evcxr's rust-analyzer needs it) ----------------------------------------
rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src

# --- evcxr_jupyter, pinned, built once into the cache (a killed build resumes) --------------
if [ ! -x "$AVR_EVCXR_ROOT/bin/evcxr_jupyter" ]; then
  log "building evcxr_jupyter $AVR_EVCXR_VERSION (15-25 min once; cached in $AVR_EVCXR_ROOT)"
  CARGO_TARGET_DIR="$AVR_CACHE/evcxr-build-target" \
    cargo install --locked evcxr_jupyter --version "$AVR_EVCXR_VERSION" --root "$AVR_EVCXR_ROOT"
  rm -rf "$AVR_CACHE/evcxr-build-target"   # only needed to resume a killed build
fi

# --- the `rust` kernelspec inside the venv, with libtorch's environment ---------------------
JUPYTER_PATH="$AVR_VENV/share/jupyter" evcxr_jupyter --install >/dev/null
"$AVR_VENV/bin/python" scripts/kernel_env.py "$AVR_VENV/share/jupyter/kernels/rust/kernel.json"
log "ready: venv $AVR_VENV, kernel rust, libtorch $LIBTORCH"
