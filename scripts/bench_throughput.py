#!/usr/bin/env python3
"""Training and mask-training throughput, ours and the PyTorch anchors side by side in one run,
with the roofline — the figures of BENCHMARKS.md (`make bench`).

Sides of a row: ours (`avr bench …`), and the anchors of `bench_pytorch.py`:
- `naive`: the naive eager port, twice — with glibc's default allocator (the way the study ran
  it) and with the allocator settings our binaries make for themselves (`session::setup`: freed
  memory stays in the heap instead of going back to the OS and being page-faulted in again each
  step);
- `compile`: the same code under `torch.compile` (inductor, CPU), our allocator settings; its
  compilation (the first step) is reported apart;
- `batched`: for mask training, Csordás's batched layers (K samples through `bmm` / grouped
  convolution), our allocator settings.
Same batch (32), K (4), threads, allocator settings. Every side of every row runs R times, in
turn (all sides of a row, then the next row), so a drift of the VM's speed hits all alike. Each
run reports its median step; a cell is the median of the R runs. Ratios compare medians.

Targets (issue: speed): for each, the ratio ours ÷ anchor run by run (run i of ours against run
i of the anchor, which ran beside it), their median, how many runs reach the target, and an
exact one-sided sign test of "the ratio is above the target": P(K ≥ runs above | n, ½), ties
dropped. With 3 runs it can be no smaller than 0.125, so a "met" on 3 runs is not significant.

Kernel switches in one process (`avr bench switch`): separate processes drift apart by more than
one kernel gains on this VM, so each hand-written kernel (and the flat AdamW update) is also
compared with libtorch's path round by round inside one process, in alternating order.

The roofline: FLOPs per problem from the layer shapes (`avr bench flops`: 2 per multiply-add of
the convolutions and linear layers, forward + backward), this CPU's measured peak (`avr bench
gemm`: 2048² matrix products on the same threads), and the fraction each side achieves.

Usage (after `. scripts/env.sh`): bench_throughput.py [--repeats 3] [--steps 20]
    [--pytorch-steps 5] [--only mask|train] [--variants official,seed] [--switch-rounds 12]
    [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

# glibc tunables equal to `session::setup`'s mallopt(M_MMAP_THRESHOLD, 1 << 30) and
# mallopt(M_TRIM_THRESHOLD, i32::MAX).
OUR_ALLOCATOR = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647"

# (label, `avr bench` arguments, `bench_pytorch.py` arguments or None, anchors)
ROWS = [
    ("train official @80", "train --variant official --size 80", "train --variant official --size 80", ["naive", "compile"]),
    ("train official @80, libtorch's first block", "train --variant official --size 80", None, []),
    ("train official @80, libtorch's relation experts", "train --variant official --size 80", None, []),
    ("train official @80, kernels on std threads", "train --variant official --size 80", None, []),
    ("train official @80, --precision bf16", "train --variant official --size 80 --precision bf16", None, []),
    ("train seed @160", "train --variant seed --size 160", "train --variant seed --size 160", ["naive"]),
    ("mask official @80, K-batched", "mask --variant official --size 80 --samples 4", "mask --variant official --size 80 --samples 4", ["naive", "compile", "batched"]),
    ("mask official @80, K separate passes", "mask --variant official --size 80 --samples 4 --separate", None, []),
    ("mask seed @160, K-batched", "mask --variant seed --size 160 --samples 4", "mask --variant seed --size 160 --samples 4", ["naive"]),
    ("mask seed @160, K separate passes", "mask --variant seed --size 160 --samples 4 --separate", None, []),
]

# Rows of ours run with extra environment: the same binary with a hand-written kernel off
# (`model::fused`, `model::fused_experts`) or with the kernels' parts on threads of their own
# instead of libtorch's OpenMP team (`model::team`), so that each gain is measured side by side
# in the same run.
OUR_ENV = {
    "train official @80, libtorch's first block": {"AVR_FUSED_FIRST_BLOCK": "0"},
    "train official @80, libtorch's relation experts": {"AVR_FUSED_EXPERTS": "0"},
    "train official @80, kernels on std threads": {"AVR_OPENMP_TEAM": "0"},
}

# (row, anchor side) → the target for ours ÷ that side.
TARGETS = {
    ("train official @80", "naive_our_allocator"): 3.0,
    ("train official @80", "compile"): 2.0,
    ("mask official @80, K-batched", "naive_our_allocator"): 3.0,
    ("mask official @80, K-batched", "batched"): 1.5,
}

# `avr bench switch --step S --kernel K --precision P`: the in-process comparisons, after a
# step's rows (only the experts' kernel acts in mask steps, and all but it in bf16 steps).
SWITCHES = {
    "train official @80": [("train", "first-block", "f32"), ("train", "experts", "f32"), ("train", "flat-adam", "f32")],
    "train official @80, --precision bf16": [("train", "first-block", "bf16")],
    "mask official @80, K-batched": [("mask", "experts", "f32")],
}

SIDE_NAMES = {
    "ours": "ours",
    "naive": "naive PyTorch eager, default allocator",
    "naive_our_allocator": "naive PyTorch eager, our allocator settings",
    "compile": "PyTorch `torch.compile`, our allocator settings",
    "batched": "Csordás batched layers (PyTorch), our allocator settings",
}


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def sides_of(anchors):
    out = []
    for a in anchors:
        out += ["naive", "naive_our_allocator"] if a == "naive" else [a]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed steps of ours")
    ap.add_argument("--pytorch-steps", type=int, default=5, help="timed steps of the PyTorch anchors (the seed reference's steps take seconds)")
    ap.add_argument("--only", choices=["train", "mask"])
    ap.add_argument("--variants", default="official,seed")
    ap.add_argument("--switch-rounds", type=int, default=12, help="rounds of each in-process kernel switch (0: none)")
    ap.add_argument("--switch-steps", type=int, default=16, help="timed steps of each run of a switch")
    ap.add_argument("--json", help="also write every run to this file")
    a = ap.parse_args()
    avr = os.path.join(os.environ["CARGO_TARGET_DIR"], "debug", "avr")
    python = os.path.join(os.environ["AVR_PYTORCH_VENV"], "bin", "python")
    reference = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_pytorch.py")
    # The reference must compute the study's model, and its batched layers the naive port's
    # numbers, before either is timed.
    subprocess.run([python, reference, "check"], check=True)
    variants = a.variants.split(",")
    rows = [r for r in ROWS if (a.only is None or r[1].startswith(a.only)) and any(f"--variant {v} " in r[1] + " " for v in variants)]
    # `avr` refuses bf16 where the CPU only emulates it (two orders of magnitude slower).
    simd = run_json([avr, "info", "--json"])["simd"]
    if simd != "avx512_bf16":
        print(f"[bench] no bf16 rows: this CPU offers {simd}, not AVX-512-BF16", file=sys.stderr)
        rows = [r for r in rows if "bf16" not in r[1]]
    # torch.compile's on-disk cache starts empty, so the first run's compilation is a cold one
    # (the later runs find the cache, as a user's second session would).
    tuned_env = dict(os.environ, GLIBC_TUNABLES=OUR_ALLOCATOR, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(prefix="avr-inductor-"))
    runs = {label: {s: [] for s in ["ours", *sides_of(anchors)]} for label, _, _, anchors in rows}
    compile_s = {}
    for rep in range(a.repeats):
        for label, ours, theirs, anchors in rows:
            r = runs[label]
            env = dict(os.environ, **OUR_ENV.get(label, {}))
            cmd = [avr, "bench", *ours.split(), "--batch", "32", "--steps", str(a.steps), "--json"]
            r["ours"].append(run_json(cmd, env)["problems_per_s"])
            for side in sides_of(anchors):
                anchor = "naive" if side.startswith("naive") else side
                cmd = [python, reference, *theirs.split(), "--anchor", anchor, "--batch", "32", "--steps", str(a.pytorch_steps), "--json"]
                report = run_json(cmd, None if side == "naive" else tuned_env)
                r[side].append(report["problems_per_s"])
                if report.get("compile_s") is not None:
                    compile_s.setdefault(label, []).append(report["compile_s"])
            print(f"[bench] run {rep + 1}/{a.repeats} {label}: " + ", ".join(f"{s} {v[-1]:.1f}" for s, v in r.items()), file=sys.stderr)
    switches = {}
    measured_rows = {label for label, _, _, _ in rows}
    planned = [sk for row, sks in SWITCHES.items() if row in measured_rows for sk in sks] if a.switch_rounds > 0 else []
    for step, kernel, precision in planned:
        cmd = [avr, "bench", "switch", "--step", step, "--kernel", kernel, "--precision", precision,
               "--rounds", str(a.switch_rounds), "--steps", str(a.switch_steps), "--json"]
        name = f"{step}: {kernel}" + (f" ({precision})" if precision != "f32" else "")
        c = switches[name] = run_json(cmd)["comparison"]
        print(f"[bench] switch {name}: median speed-up {c['median_speedup']:.3f}", file=sys.stderr)
    flops = flops_per_problem(avr)
    roofs = run_json([avr, "bench", "gemm", "--json"])
    peaks = {p["kind"]: p["gflops"] for p in roofs["peaks"]}
    bandwidth = {b["pattern"]: b["gb_per_s"] for b in roofs["bandwidth"]}
    print_throughput(rows, runs, compile_s, a)
    print_targets(avr, runs)
    print_switches(switches)
    print_roofline(rows, runs, flops, peaks, bandwidth)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": runs, "compile_s": compile_s, "flops_per_problem": flops, "peak_gflops": peaks,
                       "bandwidth_gb_per_s": bandwidth, "switches": switches}, f, indent=1)


def flops_per_problem(avr):
    """Forward + backward FLOPs per problem of the official model, from its layer shapes."""
    return run_json([avr, "bench", "flops", "--json"])["step_flops_per_problem"]


def print_throughput(rows, runs, compile_s, a):
    print(f"| bench (batch 32, K = 4) | side | problems/s: median of {a.repeats} runs (all runs); median step of {a.steps} ours / {a.pytorch_steps} PyTorch | ours ÷ side |")
    print("|---|---|---|---|")
    for label, _, _, _ in rows:
        r = runs[label]
        ours = statistics.median(r["ours"])
        for side, values in r.items():
            med = statistics.median(values)
            cell = f"**{med:.1f}** ({', '.join(f'{x:.1f}' for x in values)})"
            if side == "compile" and label in compile_s:
                # The first run compiles cold; later runs find inductor's on-disk cache.
                cell += f"; compilation apart: {', '.join(f'{c:.0f}' for c in compile_s[label])} s"
            ratio = "" if side == "ours" else f"**{ours / med:.2f}×**"
            print(f"| {label} | {SIDE_NAMES[side]} | {cell} | {ratio} |")


def interval_text(iv):
    return f"{iv[0]:.2f}–{iv[1]:.2f}" if iv else "— (n < 6)"


def print_targets(avr, runs):
    """Each target run by run; the median's interval and the sign test come from `avr bench
    ratios` (`bench::RatioSummary`, tested there), so that they have one implementation."""
    present = [(row, side, t) for (row, side), t in TARGETS.items() if row in runs and side in runs[row]]
    if not present:
        return
    print()
    print("| target | ours ÷ anchor, run by run | median (95 % interval) | runs above | one-sided sign test: ratio above the target |")
    print("|---|---|---|---|---|")
    for row, side, target in present:
        ratios = [o / t for o, t in zip(runs[row]["ours"], runs[row][side])]
        s = run_json([avr, "bench", "ratios", "--target", repr(target), "--json", *map(repr, ratios)])
        above, below = s["above"], s["below"]
        verdict = "met" if below == 0 else ("missed" if above == 0 else "at the line")
        print(f"| {row} ≥ {target:g}× {SIDE_NAMES[side]} | {', '.join(f'{r:.2f}' for r in ratios)} | **{s['median']:.2f}** ({interval_text(s['median_interval_95'])}) "
              f"| {above} of {len(ratios)} ({verdict}) | p = {s['sign_test_above_p']:.4f} |")


def print_switches(switches):
    if not switches:
        return
    print()
    print("| step: kernel (in one process, official @80, batch 32) | rounds | median speed-up (95 % interval) | kernel faster in | sign test |")
    print("|---|---|---|---|---|")
    for kernel, c in switches.items():
        iv = c.get("median_interval_95")
        iv = f"{iv[0]:.3f}–{iv[1]:.3f}" if iv else "— (n < 6)"
        print(f"| {kernel} (`{c['variable']}=0` against on) | {len(c['rounds'])} | **{c['median_speedup']:.3f}** ({iv}) "
              f"| {c['on_faster']} | p = {c['sign_test_p']:.3f} |")


def bf16_peak(peaks):
    """The bf16 peak as printed: `avr bench gemm` measures it only where the CPU has native bf16."""
    if "bfloat16" not in peaks:
        return "not measured (no AVX-512-BF16: emulated, ~0.3 GFLOP/s)"
    return f"{peaks['bfloat16']:.1f} GFLOP/s"


def print_roofline(rows, runs, flops, peaks, bandwidth):
    print()
    print(f"FLOPs per problem, official @80, forward + backward: {flops / 1e9:.3f} GFLOP. Measured peak (2048² matrix products, 2 threads): f32 {peaks['float']:.1f} GFLOP/s, bf16 {bf16_peak(peaks)}.")
    print(f"Measured memory bandwidth (512 MB f32 buffer, 2 threads): read {bandwidth['read']:.1f} GB/s, copy {bandwidth['copy']:.1f} GB/s (bytes read + written).")
    print()
    print("| bench | side | achieved GFLOP/s | fraction of the f32 peak |")
    print("|---|---|---|---|")
    for label, _, _, _ in rows:
        if "official" not in label:
            continue
        for side, values in runs[label].items():
            achieved = statistics.median(values) * flops / 1e9
            frac = f"{100 * achieved / peaks['float']:.1f} %"
            if "bf16" in label and "bfloat16" in peaks:
                frac += f" ({100 * achieved / peaks['bfloat16']:.1f} % of the bf16 peak)"
            print(f"| {label} | {SIDE_NAMES[side]} | {achieved:.1f} | {frac} |")


if __name__ == "__main__":
    main()
