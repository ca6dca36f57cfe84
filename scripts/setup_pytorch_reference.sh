#!/usr/bin/env bash
# Idempotent: a separate venv with the FULL torch==2.13.0 wheel set from PyPI (~4.7 GB with its
# CUDA wheels), only for the PyTorch reference of `make bench` (scripts/bench_pytorch.py).
# The main venv keeps libtorch's CPU footprint, in which `import torch` fails (README).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
stamp="$AVR_PYTORCH_VENV/.avr-installed-torch$AVR_TORCH_VERSION-full-v1"
if [ ! -f "$stamp" ]; then
  printf '[setup] creating %s (full torch==%s from PyPI, for the PyTorch reference)\n' "$AVR_PYTORCH_VENV" "$AVR_TORCH_VERSION" >&2
  python3 -m venv "$AVR_PYTORCH_VENV"
  "$AVR_PYTORCH_VENV/bin/pip" install -q "torch==$AVR_TORCH_VERSION" numpy==2.4.6
  touch "$stamp"
fi
"$AVR_PYTORCH_VENV/bin/python" -c 'import torch; assert torch.__version__.startswith("'"$AVR_TORCH_VERSION"'"), torch.__version__'
