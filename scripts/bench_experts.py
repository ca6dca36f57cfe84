#!/usr/bin/env python3
"""The official SCL's relation experts alone: the 5 experts' 9 → 64 → 32 → 1 MLP over the
32 · 8 · 80 attribute rows of a batch of 32, forward + backward and forward alone, 2 threads,
median of 25 after 3 warm-ups, two ways:
- `port`: the naive port's experts (`bench_pytorch.expert_mlp`, one expert after another, as
  the official code runs them);
- `stacked`: as our libtorch path runs them, one `baddbmm` per layer over the 5 experts'
  stacked weights, the ReLU in place.
The cost that `model::fused_experts` attacks (BENCHMARKS.md, "The next lever" and "The
relation experts fused"). The port's MLP and its step timer are imported from
`bench_pytorch.py`, so the two scripts cannot drift apart.

Usage, with the PyTorch reference's venv and our allocator settings:
    . scripts/env.sh
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647 \\
        "$AVR_PYTORCH_VENV/bin/python" scripts/bench_experts.py
"""
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_pytorch as port  # noqa: E402  (the naive port: its experts and its timer)

EXPERTS, ROWS = 5, 32 * 8 * 80
SHAPES = [(64, 9), (32, 64), (1, 32)]


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    specs = [s for s in port.official_specs(80) if ".mlp." in s[0]]
    p = {n: t.requires_grad_() for n, t in port.init_params(specs).items()}
    x = torch.randn(ROWS, 9, requires_grad=True)
    grad = torch.randn(EXPERTS, ROWS, 1)

    def by_port():
        return torch.stack([port.expert_mlp(port.PLAIN, p, e, x) for e in range(EXPERTS)])

    def stacked():
        h = x.unsqueeze(0).expand(EXPERTS, ROWS, 9)
        for j in range(len(SHAPES)):
            w = torch.stack([p[f"rel.experts.{e}.mlp.{j}.weight"] for e in range(EXPERTS)])
            b = torch.stack([p[f"rel.experts.{e}.mlp.{j}.bias"] for e in range(EXPERTS)])
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if j < len(SHAPES) - 1:
                h = h.relu_()
        return h

    assert torch.allclose(by_port(), stacked(), rtol=1e-5, atol=1e-5), "the two ways differ"
    flops = 2 * EXPERTS * ROWS * sum(o * i for o, i in SHAPES)
    for way, forward in [("port", by_port), ("stacked", stacked)]:
        def forward_backward():
            forward().backward(grad)

        def forward_only():
            with torch.no_grad():
                forward()

        for name, step, times_forward in [("forward + backward", forward_backward, 3),
                                          ("forward", forward_only, 1)]:
            for _ in range(3):
                step()
            ms = 1000 * statistics.median(port.step_seconds(step, 25))
            rate = times_forward * flops / ms / 1e6
            print(f"experts ({way}) {name}: {ms:.2f} ms ({rate:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
