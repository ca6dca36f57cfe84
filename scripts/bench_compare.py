#!/usr/bin/env python3
"""Throughput of two `avr` binaries side by side: the same bench rows, run in turn (A, B, A, B…)
R times, the median of each side's median-step figures. Used to check that a refactor made no
row slower: `scripts/bench_compare.py OLD_AVR NEW_AVR [--runs 3] [--steps 20]`."""
import argparse
import json
import statistics
import subprocess

ROWS = [
    ("train official @80", ["bench", "train", "--variant", "official", "--size", "80"]),
    ("train seed @160", ["bench", "train", "--variant", "seed", "--size", "160"]),
    ("mask official @80, K-batched", ["bench", "mask", "--variant", "official", "--size", "80"]),
    ("mask seed @160, K-batched", ["bench", "mask", "--variant", "seed", "--size", "160"]),
]


def run(binary, args, steps):
    out = subprocess.run([binary, *args, "--steps", str(steps), "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["problems_per_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    print("| bench (batch 32, K = 4) | before (problems/s) | after (problems/s) | after / before |")
    print("|---|---|---|---|")
    for name, args in ROWS:
        old, new = [], []
        for _ in range(a.runs):
            old.append(run(a.old, args, a.steps))
            new.append(run(a.new, args, a.steps))
        mo, mn = statistics.median(old), statistics.median(new)
        runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
        print(f"| {name} | {mo:.1f} ({runs(old)}) | {mn:.1f} ({runs(new)}) | {mn / mo:.2f} |", flush=True)


if __name__ == "__main__":
    main()
