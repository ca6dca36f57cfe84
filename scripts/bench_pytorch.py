#!/usr/bin/env python3
"""The PyTorch reference of BENCHMARKS.md: a naive eager port of SCL training and of the study's
mask training, timed like `avr bench train|mask` (two warm-up steps, then each step timed; the
headline is the median step) on random panels, so both sides run in the same `make bench`.

"Naive" means the way the study's Python code does it, with nothing of the Rust engine's:
- mask training: one forward + backward per chunk of B/K problems, each with a fresh
  Gumbel-sigmoid sample of every logit tensor (`MaskedSCLModel.forward`), BatchNorm through
  `F.batch_norm` in eval mode, gradients accumulated, one Adam step;
- the `seed` variant encodes 72 panels per problem (8 sets of 9, `SCL_preprocess`);
- the `official` variant encodes the 16 panels once (that is the official model's own code).
Parameter names and shapes are the Rust models' (`avr info`), so both sides mask the same
199,838 (`seed` @160) or 131,286 (`official` @80) scalars.

Usage: bench_pytorch.py train|mask --variant official|seed --size H [--batch 32] [--samples 4]
       [--steps 20] [--json]
       bench_pytorch.py check --fixtures DIR      # the reference computes the study's logits
       bench_pytorch.py specs --variant V --size H # its parameter list as JSON (no torch needed;
                                                   # tests/bench_reference.rs compares it with ours)
Needs the full torch==2.13.0 wheel (`make bench` installs it into its own venv).
"""
import argparse
import io
import json
import math
import os
import pickle
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # `specs` needs no torch: the test suite's venv has only libtorch's CPU footprint
    torch = F = None


# --- parameters -----------------------------------------------------------------------------

def linear_spec(out, name, d_in, d_out):
    out.append((f"{name}.weight", (d_out, d_in), True))
    out.append((f"{name}.bias", (d_out,), True))


def norm_spec(out, name, d, running):
    out.append((f"{name}.weight", (d,), True))
    out.append((f"{name}.bias", (d,), True))
    if running:
        out.append((f"{name}.running_mean", (d,), False))
        out.append((f"{name}.running_var", (d,), False))


def res_block_spec(out, name, d):
    norm_spec(out, f"{name}.ln_in", d, False)
    linear_spec(out, f"{name}.fc1", d, d)
    norm_spec(out, f"{name}.ln_out", d, False)
    linear_spec(out, f"{name}.fc2", d, d)


def official_specs(size):
    s, c_in, side = [], 1, size
    for i, c in enumerate([16, 16, 32, 32]):
        s.append((f"visual.conv.{i}.weight", (c, c_in, 3, 3), True))
        s.append((f"visual.conv.{i}.bias", (c,), True))
        norm_spec(s, f"visual.bn.{i}", c, True)
        c_in, side = c, (side + 1) // 2
    linear_spec(s, "visual.spatial", side * side, 80)
    linear_spec(s, "visual.attr_mlp.0", c_in * 8, 128)
    linear_spec(s, "visual.attr_mlp.1", 128, 8)
    res_block_spec(s, "visual.attr_res", 8)
    res_block_spec(s, "rel.res", 80)
    for e in range(5):
        linear_spec(s, f"rel.experts.{e}.mlp.0", 9, 64)
        linear_spec(s, f"rel.experts.{e}.mlp.1", 64, 32)
        linear_spec(s, f"rel.experts.{e}.mlp.2", 32, 1)
        res_block_spec(s, f"rel.experts.{e}.res", 1)
    linear_spec(s, "scorer.0", 400, 128)
    linear_spec(s, "scorer.1", 128, 1)
    return s


def ffr_spec(out, name, d):
    linear_spec(out, f"{name}.net.0", d, 4 * d)
    norm_spec(out, f"{name}.net.1", 4 * d, False)
    linear_spec(out, f"{name}.net.3", 4 * d, d)


def seed_specs(size):
    s, ch = [], [1, 16, 16, 32, 32, 32]
    for i in range(5):
        s.append((f"vision.net.{2 * i}.weight", (ch[i + 1], ch[i], 3, 3), True))
        s.append((f"vision.net.{2 * i}.bias", (ch[i + 1],), True))
        if i < 4:
            norm_spec(s, f"vision.net.{2 * i + 1}", ch[i + 1], True)
    side = size >> 5
    linear_spec(s, "vision.net.10", 32 * side * side, 80)
    ffr_spec(s, "vision.net.12", 80)
    linear_spec(s, "attr_net.mlp.net.0", 8, 128)
    linear_spec(s, "attr_net.mlp.net.2", 128, 8)
    ffr_spec(s, "ff_residual", 80)
    linear_spec(s, "rel_net.net.0", 9, 64)
    linear_spec(s, "rel_net.net.2", 64, 32)
    linear_spec(s, "rel_net.net.4", 32, 5)
    linear_spec(s, "to_logit", 400, 1)
    return s


def init_params(specs):
    """PyTorch-default-like values (the timing does not depend on them)."""
    p = {}
    for name, shape, _ in specs:
        if name.endswith("running_var"):
            p[name] = torch.ones(shape)
        elif name.endswith("running_mean"):
            p[name] = torch.zeros(shape)
        elif len(shape) >= 2:
            bound = 1 / math.sqrt(math.prod(shape[1:]))
            p[name] = torch.empty(shape).uniform_(-bound, bound)
        else:
            p[name] = torch.empty(shape).uniform_(-0.1, 0.1) + (1.0 if name.endswith(".weight") else 0.0)
    return p


# --- models (functional, over a name -> tensor dict) ----------------------------------------

def lin(p, name, x):
    return F.linear(x, p[f"{name}.weight"], p[f"{name}.bias"])


def ln(p, name, x):
    w = p[f"{name}.weight"]
    return F.layer_norm(x, w.shape, w, p[f"{name}.bias"], 1e-5)


def bn(p, name, x, training):
    return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.weight"], p[f"{name}.bias"], training, 0.1, 1e-5)


def res_block(p, name, x):
    h = lin(p, f"{name}.fc1", F.relu(ln(p, f"{name}.ln_in", x)))
    return x + lin(p, f"{name}.fc2", F.relu(ln(p, f"{name}.ln_out", h)))


def official_forward(p, x, training):
    b, _, hgt, wid = x.shape
    h = x.reshape(b * 16, 1, hgt, wid) * 255.0  # the official model reads 0-255 pixels
    for i in range(4):
        h = F.conv2d(h, p[f"visual.conv.{i}.weight"], p[f"visual.conv.{i}.bias"], stride=2, padding=1)
        h = F.relu(bn(p, f"visual.bn.{i}", h, training))
    n, c = h.shape[:2]
    h = lin(p, "visual.spatial", h.flatten(2))  # (n, c, 80)
    h = h.reshape(n, c, 10, 8).permute(0, 2, 1, 3).reshape(n, 10, c * 8)
    h = lin(p, "visual.attr_mlp.1", F.relu(lin(p, "visual.attr_mlp.0", h)))
    emb = res_block(p, "visual.attr_res", h).reshape(b, 16, 80)
    emb = res_block(p, "rel.res", emb)
    sets = torch.cat([emb[:, :8].unsqueeze(1).expand(b, 8, 8, 80), emb[:, 8:].unsqueeze(2)], 2)
    u = sets.transpose(2, 3)  # (b, 8, 80, 9)
    experts = []
    for e in range(5):
        h = F.relu(lin(p, f"rel.experts.{e}.mlp.0", u))
        h = lin(p, f"rel.experts.{e}.mlp.2", F.relu(lin(p, f"rel.experts.{e}.mlp.1", h)))
        experts.append(res_block(p, f"rel.experts.{e}.res", h))
    latent = torch.cat(experts, -1).softmax(-1)  # (b, 8, 80, 5)
    h = F.relu(lin(p, "scorer.0", latent.reshape(b, 8, -1)))
    return lin(p, "scorer.1", h).reshape(b, 8)


def ffr(p, name, x):
    h = F.relu(ln(p, f"{name}.net.1", lin(p, f"{name}.net.0", x)))
    return x + lin(p, f"{name}.net.3", h)


def seed_forward(p, x, training):
    b, _, hgt, wid = x.shape
    # SCL_preprocess: 8 sets of (8 context + 1 candidate) panels -> 72 encodes per problem.
    sets = torch.cat([x[:, :8].unsqueeze(1).expand(b, 8, 8, hgt, wid), x[:, 8:].unsqueeze(2)], 2)
    h = sets.reshape(b * 72, 1, hgt, wid)
    for i in range(5):
        h = F.conv2d(h, p[f"vision.net.{2 * i}.weight"], p[f"vision.net.{2 * i}.bias"], stride=2, padding=1)
        if i < 4:
            h = bn(p, f"vision.net.{2 * i + 1}", h, training)
    h = F.relu(lin(p, "vision.net.10", h.flatten(1)))
    h = ffr(p, "vision.net.12", h)
    h = h.reshape(-1, 10, 8)
    h = lin(p, "attr_net.mlp.net.2", F.relu(lin(p, "attr_net.mlp.net.0", h))).reshape(-1, 80)
    h = ffr(p, "ff_residual", h)
    u = h.reshape(b, 8, 9, 80).transpose(2, 3)  # (b, 8, 80, 9)
    r = lin(p, "rel_net.net.4", F.relu(lin(p, "rel_net.net.2", F.relu(lin(p, "rel_net.net.0", u)))))
    return lin(p, "to_logit", r.flatten(2)).flatten(1)


# --- steps ----------------------------------------------------------------------------------

def gumbel_sigmoid_mask(logit, tau=1.0):
    """The study's hard straight-through Gumbel-sigmoid (`transform_logit_tensors`)."""
    u1 = torch.rand_like(logit).clamp(1e-6, 1 - 1e-6)
    u2 = torch.rand_like(logit).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((logit - torch.log(torch.log(u1) / torch.log(u2))) / tau)
    return ((s > 0.5).float() - s).detach() + s


def mask_step_fn(forward, specs, params, x, y, k, alpha=1e-6):
    logits = {n: torch.full(shape, 2.5, requires_grad=True) for n, shape, trainable in specs if trainable}
    opt = torch.optim.Adam(list(logits.values()), lr=1e-2)
    chunk = x.shape[0] // k

    def step():
        opt.zero_grad()
        for c in range(k):
            masked = {n: (t * gumbel_sigmoid_mask(logits[n]) if n in logits else t) for n, t in params.items()}
            out = forward(masked, x[c * chunk:(c + 1) * chunk], False)
            reg = sum(l.sum() for l in logits.values())
            (F.cross_entropy(out, y[c * chunk:(c + 1) * chunk]) + alpha * reg).backward()
        opt.step()
    return step


def train_step_fn(forward, specs, params, x, y):
    trainable = [params[n] for n, _, t in specs if t]
    for t in trainable:
        t.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=5e-3, weight_decay=0.01)

    def step():
        opt.zero_grad()
        F.cross_entropy(forward(params, x, True), y).backward()
        opt.step()
    return step


# --- check: the reference is the study's model ----------------------------------------------

# PyTorch's logits for the study's checkpoint on seed/datasets/originals/test/center_single/
# RAVEN_0_train.npz, panels transposed (the same known answer as tests/study_checkpoint.rs).
STUDY_LOGITS = [-3.290863, -27.444084, -10.555760, -40.575760, -13.567273, 0.665059, -33.953876, -25.988605]


class CpuUnpickler(pickle.Unpickler):
    """The study's `utils.CPU_Unpickler`: its checkpoint is a plain pickle of CUDA tensors."""

    def find_class(self, module, name):
        if module == "torch.storage" and name == "_load_from_bytes":
            return lambda b: torch.load(io.BytesIO(b), map_location="cpu", weights_only=False)
        return super().find_class(module, name)


def default_fixtures():
    """Where `fixtures::fixtures_dir` looks: $AVR_FIXTURES, else the first shared/fixtures beside
    the repository or an ancestor, else /work/shared/fixtures."""
    if os.environ.get("AVR_FIXTURES"):
        return os.environ["AVR_FIXTURES"]
    d = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    while True:
        candidate = os.path.join(d, "shared", "fixtures")
        if os.path.isfile(os.path.join(candidate, "README.md")):
            return candidate
        if os.path.dirname(d) == d:
            return "/work/shared/fixtures"
        d = os.path.dirname(d)


def check(fixtures):
    """Runs the reference's seed forward (72 encodes) on the study's checkpoint: the logits must
    be PyTorch's own, so the benchmark times the study's computation, not a look-alike."""
    import numpy as np

    path = os.path.join(fixtures, "seed", "checkpoint", "SCL_pretrain_80.ckpt")
    if not os.path.isfile(path):
        sys.exit(f"bench_pytorch check: {path}: the study's checkpoint is missing (set AVR_FIXTURES to the shared/fixtures folder)")
    with open(path, "rb") as f:
        state = CpuUnpickler(f).load()["model state dict"]
    params = {k[len("scl."):]: v.float() for k, v in state.items() if k.startswith("scl.") and "num_batches" not in k}
    missing = sorted({n for n, _, _ in seed_specs(160)} ^ set(params))
    if missing:
        sys.exit(f"bench_pytorch check: {path}: names differ from the reference's: {missing}")
    npz = os.path.join(fixtures, "seed", "datasets", "originals", "test", "center_single", "RAVEN_0_train.npz")
    image = torch.from_numpy(np.load(npz)["image"]).float().div(255.0).transpose(-1, -2).unsqueeze(0)
    with torch.no_grad():
        logits = seed_forward(params, image, False)[0].tolist()
    diff = max(abs(a - b) for a, b in zip(logits, STUDY_LOGITS))
    print(f"bench_pytorch check: seed reference on the study's checkpoint, max |logit - PyTorch's| = {diff:.2e}")
    if diff > 1e-3:
        sys.exit(f"bench_pytorch check: {npz}: logits {logits} differ from the study's {STUDY_LOGITS}")


def main():
    if sys.argv[1:2] == ["specs"]:
        ap = argparse.ArgumentParser(description="the reference's parameter list as JSON")
        ap.add_argument("specs")
        ap.add_argument("--variant", choices=["official", "seed"], required=True)
        ap.add_argument("--size", type=int, required=True)
        a = ap.parse_args()
        specs = official_specs(a.size) if a.variant == "official" else seed_specs(a.size)
        return print(json.dumps([{"name": n, "shape": list(shape), "trainable": t} for n, shape, t in specs]))
    if torch is None:
        sys.exit("bench_pytorch: torch cannot be imported here; `make bench` runs this in $AVR_PYTORCH_VENV")
    if sys.argv[1:2] == ["check"]:
        ap = argparse.ArgumentParser(description="check the reference against the study's checkpoint")
        ap.add_argument("check")
        ap.add_argument("--fixtures", default=default_fixtures())
        return check(ap.parse_args().fixtures)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["train", "mask"])
    ap.add_argument("--variant", choices=["official", "seed"], default="official")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    size = a.size or (80 if a.variant == "official" else 160)
    if a.batch % a.samples:
        sys.exit(f"bench_pytorch: batch {a.batch} is not divisible by {a.samples} samples")
    torch.manual_seed(a.seed)
    specs = official_specs(size) if a.variant == "official" else seed_specs(size)
    forward = official_forward if a.variant == "official" else seed_forward
    params = init_params(specs)
    x = torch.rand(a.batch, 16, size, size)
    y = torch.randint(0, 8, (a.batch,))
    step = mask_step_fn(forward, specs, params, x, y, a.samples) if a.what == "mask" else train_step_fn(forward, specs, params, x, y)
    for _ in range(2):
        step()
    seconds = []
    for _ in range(max(a.steps, 1)):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    report = {
        "bench": f"pytorch {a.what}", "variant": a.variant, "image_size": size, "batch": a.batch,
        "samples": a.samples if a.what == "mask" else None, "steps": len(seconds), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "problems_per_s": a.batch / median,
        "problems_per_s_mean": a.batch * len(seconds) / sum(seconds), "median_step_s": median, "seconds": seconds,
    }
    if a.json:
        print(json.dumps(report))
    else:
        print(f"pytorch {a.what} {a.variant} @{size}: {report['problems_per_s']:.1f} problems/s (median step {median * 1e3:.1f} ms, torch {torch.__version__}, {report['threads']} threads)")


if __name__ == "__main__":
    main()
