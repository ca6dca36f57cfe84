"""Add an `env` block to the evcxr kernelspec so cells that link libtorch load.

evcxr compiles each cell into a cdylib whose DT_NEEDED libtorch_cpu.so has no rpath, so the
kernel needs LD_LIBRARY_PATH at process start; cargo builds inside the kernel need LIBTORCH.
Values come from scripts/env.sh (already exported by the caller).
"""
import json
import os
import sys

path = sys.argv[1]
with open(path) as f:
    spec = json.load(f)
spec["env"] = {
    "LIBTORCH": os.environ["LIBTORCH"],
    "LD_LIBRARY_PATH": os.environ["LD_LIBRARY_PATH"],
    # Persistent build dir: tch/polars/plotters are compiled once, not per kernel start.
    "EVCXR_TMPDIR": os.environ["EVCXR_TMPDIR"],
    # The toumei notebook's real digits (scikit-learn's bundled set, see scripts/env.sh).
    "AVR_DIGITS": os.environ["AVR_DIGITS"],
    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(spec, f, indent=1)
os.replace(tmp, path)
