# Shared environment for the Makefile and scripts: where cached tools live and how libtorch
# is found. Source it; it only exports variables (no installs).
export AVR_CACHE="${AVR_CACHE:-$HOME/.cache/avr-modularity}"
export AVR_TORCH_VERSION=2.13.0
export AVR_EVCXR_VERSION=0.22.0
export AVR_VENV="$AVR_CACHE/venv"
# scikit-learn ships the 8x8 digits inside itself; `make setup` installs it (data only).
export AVR_SKLEARN_VERSION=1.9.1
export AVR_DIGITS="${AVR_DIGITS:-$AVR_VENV/lib/python3.11/site-packages/sklearn/datasets/data/digits.csv.gz}"
# Full torch wheel set, only for the PyTorch reference of `make bench` (scripts/setup_pytorch_reference.sh).
export AVR_PYTORCH_VENV="$AVR_CACHE/venv-pytorch"
export AVR_EVCXR_ROOT="$AVR_CACHE/evcxr-$AVR_EVCXR_VERSION"
export LIBTORCH="$AVR_VENV/lib/python3.11/site-packages/torch"
# libtorch_cpu.so needs libcudart/libcupti from the two small nvidia wheels (see README).
# The Rust std dylib is listed too: evcxr loads each cell's .so from a folder whose relative
# RUNPATH to the toolchain is off by one level when EVCXR_TMPDIR is a persistent directory.
AVR_RUST_STD_LIB="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/lib"
export LD_LIBRARY_PATH="$LIBTORCH/lib:$AVR_VENV/lib/python3.11/site-packages/nvidia/cu13/lib:$AVR_RUST_STD_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Build outputs stay outside the clone so a fresh clone on a warm machine builds in seconds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AVR_CACHE/target}"
export EVCXR_TMPDIR="${EVCXR_TMPDIR:-$AVR_CACHE/evcxr-tmp}"
export PATH="$AVR_EVCXR_ROOT/bin:$AVR_VENV/bin:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
