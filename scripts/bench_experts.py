#!/usr/bin/env python3
"""The official SCL's relation experts alone, as our training step runs them: the 5 experts'
9 → 64 → 32 → 1 MLP over the 32 · 8 · 80 attribute rows of a batch of 32, one `baddbmm` per
layer over the experts, the ReLU in place. Times forward + backward and forward alone on 2
threads (median of 25 after 3 warm-ups): the cost that a fused expert kernel would attack
(BENCHMARKS.md, "The next lever").

Usage, with the PyTorch reference's venv and our allocator settings:
    . scripts/env.sh
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647 \\
        "$AVR_PYTORCH_VENV/bin/python" scripts/bench_experts.py
"""
import time

import torch

EXPERTS, ROWS = 5, 32 * 8 * 80


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(ROWS, 9, requires_grad=True)
    shapes = [(64, 9), (32, 64), (1, 32)]
    weights = [torch.randn(EXPERTS, o, i, requires_grad=True) for o, i in shapes]
    biases = [torch.randn(EXPERTS, o, requires_grad=True) for o, _ in shapes]
    grad = torch.randn(EXPERTS, ROWS, 1)

    def forward():
        h = x.unsqueeze(0).expand(EXPERTS, ROWS, 9)
        for j, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if j < len(weights) - 1:
                h = h.relu_()
        return h

    def forward_backward():
        forward().backward(grad)

    def forward_only():
        with torch.no_grad():
            forward()

    flops = 2 * EXPERTS * ROWS * sum(o * i for o, i in shapes)
    for name, step, times_forward in [("forward + backward", forward_backward, 3),
                                      ("forward", forward_only, 1)]:
        ms = median_ms(step)
        rate = times_forward * flops / ms / 1e6
        print(f"experts {name}: {ms:.2f} ms ({rate:.1f} GFLOP/s)")


def median_ms(step, warmup=3, reps=25):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[reps // 2]


if __name__ == "__main__":
    main()
