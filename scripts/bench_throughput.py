#!/usr/bin/env python3
"""Training and mask-training throughput, ours and the PyTorch reference side by side in one
run — the figures of BENCHMARKS.md (`make bench`).

Every configuration below runs R times, in turn (ours, then PyTorch's, then the next row), so a
drift of the VM's speed hits both sides alike. Each run reports its median step; a cell is the
median of the R runs. Ratios compare the two medians of the same row.

PyTorch runs twice per row: as it comes (glibc's default allocator, the way the study ran it),
and with the allocator settings our binaries make for themselves (`session::setup`: freed
memory stays in the heap instead of going back to the OS and being page-faulted in again each
step). The second column is the fair one for the kernels; the target ratios are checked
against both.

Usage (after `. scripts/env.sh`): bench_throughput.py [--repeats 3] [--steps 20]
    [--pytorch-steps 5] [--only mask|train] [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

# glibc tunables equal to `session::setup`'s mallopt(M_MMAP_THRESHOLD, 1 << 30) and
# mallopt(M_TRIM_THRESHOLD, i32::MAX).
OUR_ALLOCATOR = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647"

# (label, `avr bench` arguments, `bench_pytorch.py` arguments or None)
ROWS = [
    ("train official @80", "train --variant official --size 80", "train --variant official --size 80"),
    ("train seed @160", "train --variant seed --size 160", "train --variant seed --size 160"),
    ("mask official @80, K-batched", "mask --variant official --size 80 --samples 4", "mask --variant official --size 80 --samples 4"),
    ("mask official @80, K separate passes", "mask --variant official --size 80 --samples 4 --separate", None),
    ("mask seed @160, K-batched", "mask --variant seed --size 160 --samples 4", "mask --variant seed --size 160 --samples 4"),
    ("mask seed @160, K separate passes", "mask --variant seed --size 160 --samples 4 --separate", None),
]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)["problems_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed steps of ours")
    ap.add_argument("--pytorch-steps", type=int, default=5, help="timed steps of the PyTorch reference (its seed steps take seconds)")
    ap.add_argument("--only", choices=["train", "mask"])
    ap.add_argument("--json", help="also write every run to this file")
    a = ap.parse_args()
    avr = os.path.join(os.environ["CARGO_TARGET_DIR"], "debug", "avr")
    python = os.path.join(os.environ["AVR_PYTORCH_VENV"], "bin", "python")
    reference = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_pytorch.py")
    # The reference must compute the study's model before it is timed.
    subprocess.run([python, reference, "check"], check=True)
    rows = [r for r in ROWS if a.only is None or r[1].startswith(a.only)]
    runs = {label: {"ours": [], "pytorch": [], "pytorch_our_allocator": []} for label, _, _ in rows}
    tuned_env = dict(os.environ, GLIBC_TUNABLES=OUR_ALLOCATOR)
    for rep in range(a.repeats):
        for label, ours, theirs in rows:
            runs[label]["ours"].append(run_json([avr, "bench", *ours.split(), "--batch", "32", "--steps", str(a.steps), "--json"]))
            if theirs:
                cmd = [python, reference, *theirs.split(), "--batch", "32", "--steps", str(a.pytorch_steps), "--json"]
                runs[label]["pytorch"].append(run_json(cmd))
                runs[label]["pytorch_our_allocator"].append(run_json(cmd, tuned_env))
            print(f"[bench] run {rep + 1}/{a.repeats} {label}: ours {runs[label]['ours'][-1]:.1f}" + (f", pytorch {runs[label]['pytorch'][-1]:.1f} / {runs[label]['pytorch_our_allocator'][-1]:.1f}" if theirs else ""), file=sys.stderr)
    print(f"| bench (batch 32, K = 4; median step of {a.steps} ours / {a.pytorch_steps} PyTorch) | ours, problems/s (median of {a.repeats}; all runs) | naive PyTorch 2.13 eager, default allocator | ratio | naive PyTorch, our allocator settings | ratio |")
    print("|---|---|---|---|---|---|")
    cell = lambda v: f"**{statistics.median(v):.1f}** ({', '.join(f'{x:.1f}' for x in v)})"
    for label, _, theirs in rows:
        r = runs[label]
        ours = statistics.median(r["ours"])
        if theirs:
            ratio = lambda k: f"**{ours / statistics.median(r[k]):.2f}×**"
            print(f"| {label} | {cell(r['ours'])} | {cell(r['pytorch'])} | {ratio('pytorch')} | {cell(r['pytorch_our_allocator'])} | {ratio('pytorch_our_allocator')} |")
        else:
            print(f"| {label} | {cell(r['ours'])} | | | | |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
