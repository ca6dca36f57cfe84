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

Anchors (`--anchor`): `naive` (above); `compile`, the same code under `torch.compile`
(inductor, CPU; the first step, which compiles, is reported apart as `compile_s`); and for mask
training `batched`, a port of Csordás's batched layers (RobertCsordas/modules,
`layers/batch_ops.py`): the K samples of every weight tensor in one pass, linear layers as one
`bmm`, convolutions as one grouped convolution (`groups = K`).

Usage: bench_pytorch.py train|mask --variant official|seed --size H [--batch 32] [--samples 4]
       [--steps 20] [--anchor naive|compile|batched] [--json]
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


# --- layers: plain, and Csordás's batched layers -------------------------------------------

class PlainOps:
    """One set of weights for the whole batch: `F.*` as the study's code calls them."""

    def lin(self, p, name, x):
        return F.linear(x, p[f"{name}.weight"], p[f"{name}.bias"])

    def conv(self, p, name, x):
        return F.conv2d(x, p[f"{name}.weight"], p[f"{name}.bias"], stride=2, padding=1)

    def ln(self, p, name, x):
        w = p[f"{name}.weight"]
        return F.layer_norm(x, w.shape, w, p[f"{name}.bias"], 1e-5)

    def bn(self, p, name, x, training):
        return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.weight"], p[f"{name}.bias"], training, 0.1, 1e-5)


class BatchedOps:
    """Csordás's batched layers (RobertCsordas/modules, `layers/batch_ops.py`), the way "Are
    Neural Nets Modular?" trains masks: every masked tensor carries a leading axis of K weight
    samples, the batch splits into K contiguous groups, group k uses sample k, and ONE pass
    serves all K — linear layers as one `bmm`, convolutions as one grouped convolution over the
    groups stacked along channels (`groups = K`), the affine parts of the norms broadcast per
    group. Buffers (BatchNorm running statistics) are not masked and stay plain."""

    def lin(self, p, name, x):
        w, b = p[f"{name}.weight"], p[f"{name}.bias"]  # (K, out, in), (K, out)
        k = w.shape[0]
        y = torch.bmm(x.reshape(k, -1, x.shape[-1]), w.transpose(1, 2)) + b.unsqueeze(1)
        return y.reshape(*x.shape[:-1], w.shape[1])

    def conv(self, p, name, x):
        w, b = p[f"{name}.weight"], p[f"{name}.bias"]  # (K, out, in, 3, 3), (K, out)
        k, c_out = w.shape[:2]
        grouped = x.reshape(k, -1, *x.shape[1:]).transpose(0, 1).flatten(1, 2)  # (n, K·C, H, W)
        y = F.conv2d(grouped, w.flatten(0, 1), b.flatten(), stride=2, padding=1, groups=k)
        return y.reshape(y.shape[0], k, c_out, *y.shape[2:]).transpose(0, 1).flatten(0, 1)

    def affine(self, x, w, b):
        """`x · w + b` with `w, b` (K, C) on `x` (K·n, C, …)."""
        k, c = w.shape
        shape = (k, 1, c) + (1,) * (x.dim() - 2)
        return (x.reshape(k, -1, *x.shape[1:]) * w.reshape(shape) + b.reshape(shape)).flatten(0, 1)

    def ln(self, p, name, x):
        w, b = p[f"{name}.weight"], p[f"{name}.bias"]  # (K, D)
        normed = F.layer_norm(x, w.shape[1:], None, None, 1e-5)
        k, d = w.shape
        shape = (k,) + (1,) * (x.dim() - 1) + (d,)
        return (normed.reshape(k, -1, *x.shape[1:]) * w.reshape(shape) + b.reshape(shape)).flatten(0, 1)

    def bn(self, p, name, x, training):
        assert not training, "masks are trained with eval-mode BatchNorm"
        normed = F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"], None, None, False, 0.1, 1e-5)
        return self.affine(normed, p[f"{name}.weight"], p[f"{name}.bias"])


PLAIN = PlainOps()


# --- models (functional, over a name -> tensor dict) ----------------------------------------

def res_block(ops, p, name, x):
    h = ops.lin(p, f"{name}.fc1", F.relu(ops.ln(p, f"{name}.ln_in", x)))
    return x + ops.lin(p, f"{name}.fc2", F.relu(ops.ln(p, f"{name}.ln_out", h)))


def expert_mlp(ops, p, e, u):
    """Expert e's 9 → 64 → 32 → 1 MLP on attribute rows u (…, 9), as the official code runs it."""
    h = F.relu(ops.lin(p, f"rel.experts.{e}.mlp.0", u))
    return ops.lin(p, f"rel.experts.{e}.mlp.2", F.relu(ops.lin(p, f"rel.experts.{e}.mlp.1", h)))


def official_forward(p, x, training, ops=PLAIN):
    b, _, hgt, wid = x.shape
    h = x.reshape(b * 16, 1, hgt, wid) * 255.0  # the official model reads 0-255 pixels
    for i in range(4):
        h = F.relu(ops.bn(p, f"visual.bn.{i}", ops.conv(p, f"visual.conv.{i}", h), training))
    n, c = h.shape[:2]
    h = ops.lin(p, "visual.spatial", h.flatten(2))  # (n, c, 80)
    h = h.reshape(n, c, 10, 8).permute(0, 2, 1, 3).reshape(n, 10, c * 8)
    h = ops.lin(p, "visual.attr_mlp.1", F.relu(ops.lin(p, "visual.attr_mlp.0", h)))
    emb = res_block(ops, p, "visual.attr_res", h).reshape(b, 16, 80)
    emb = res_block(ops, p, "rel.res", emb)
    sets = torch.cat([emb[:, :8].unsqueeze(1).expand(b, 8, 8, 80), emb[:, 8:].unsqueeze(2)], 2)
    u = sets.transpose(2, 3)  # (b, 8, 80, 9)
    experts = []
    for e in range(5):
        experts.append(res_block(ops, p, f"rel.experts.{e}.res", expert_mlp(ops, p, e, u)))
    latent = torch.cat(experts, -1).softmax(-1)  # (b, 8, 80, 5)
    h = F.relu(ops.lin(p, "scorer.0", latent.reshape(b, 8, -1)))
    return ops.lin(p, "scorer.1", h).reshape(b, 8)


def ffr(ops, p, name, x):
    h = F.relu(ops.ln(p, f"{name}.net.1", ops.lin(p, f"{name}.net.0", x)))
    return x + ops.lin(p, f"{name}.net.3", h)


def seed_forward(p, x, training, ops=PLAIN):
    b, _, hgt, wid = x.shape
    # SCL_preprocess: 8 sets of (8 context + 1 candidate) panels -> 72 encodes per problem.
    sets = torch.cat([x[:, :8].unsqueeze(1).expand(b, 8, 8, hgt, wid), x[:, 8:].unsqueeze(2)], 2)
    h = sets.reshape(b * 72, 1, hgt, wid)
    for i in range(5):
        h = ops.conv(p, f"vision.net.{2 * i}", h)
        if i < 4:
            h = ops.bn(p, f"vision.net.{2 * i + 1}", h, training)
    h = F.relu(ops.lin(p, "vision.net.10", h.flatten(1)))
    h = ffr(ops, p, "vision.net.12", h)
    h = h.reshape(-1, 10, 8)
    h = ops.lin(p, "attr_net.mlp.net.2", F.relu(ops.lin(p, "attr_net.mlp.net.0", h))).reshape(-1, 80)
    h = ffr(ops, p, "ff_residual", h)
    u = h.reshape(b, 8, 9, 80).transpose(2, 3)  # (b, 8, 80, 9)
    r = ops.lin(p, "rel_net.net.4", F.relu(ops.lin(p, "rel_net.net.2", F.relu(ops.lin(p, "rel_net.net.0", u)))))
    return ops.lin(p, "to_logit", r.flatten(2)).flatten(1)


# --- steps ----------------------------------------------------------------------------------

def gumbel_sigmoid_mask(logit, tau=1.0, samples=None):
    """The study's hard straight-through Gumbel-sigmoid (`transform_logit_tensors`); with
    `samples = K`, K independent draws stacked on a new leading axis."""
    shape = logit.shape if samples is None else (samples, *logit.shape)
    u1 = torch.rand(shape).clamp(1e-6, 1 - 1e-6)
    u2 = torch.rand(shape).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((logit - torch.log(torch.log(u1) / torch.log(u2))) / tau)
    return ((s > 0.5).float() - s).detach() + s


def mask_logits(specs):
    return {n: torch.full(shape, 2.5, requires_grad=True) for n, shape, trainable in specs if trainable}


def chunk_loss(forward, logits, params, x, y, alpha):
    """The naive port's loss of one chunk: a fresh sample of every logit tensor, the chunk's
    cross-entropy, the regulariser."""
    masked = {n: (t * gumbel_sigmoid_mask(logits[n]) if n in logits else t) for n, t in params.items()}
    reg = sum(l.sum() for l in logits.values())
    return F.cross_entropy(forward(masked, x, False), y) + alpha * reg


def batched_loss(forward, logits, params, x, y, k, alpha):
    """Csordás's way: K samples of every logit tensor, one pass through the batched layers.
    The loss is scaled to the naive port's sum over its K chunks, so the gradients are equal."""
    masked = {n: (t * gumbel_sigmoid_mask(logits[n], samples=k) if n in logits else t) for n, t in params.items()}
    reg = sum(l.sum() for l in logits.values())
    out = forward(masked, x, False, ops=BatchedOps())
    return k * (F.cross_entropy(out, y) + alpha * reg)


def mask_step_fn(forward, specs, params, x, y, k, anchor, alpha=1e-6):
    logits = mask_logits(specs)
    opt = torch.optim.Adam(list(logits.values()), lr=1e-2)
    chunk = x.shape[0] // k
    if anchor == "batched":
        loss = lambda: batched_loss(forward, logits, params, x, y, k, alpha)
        return lambda: adam_step(opt, [loss])
    one = compiled(chunk_loss) if anchor == "compile" else chunk_loss
    losses = [lambda c=c: one(forward, logits, params, x[c * chunk:(c + 1) * chunk], y[c * chunk:(c + 1) * chunk], alpha) for c in range(k)]
    return lambda: adam_step(opt, losses)


def train_loss(forward, params, x, y):
    return F.cross_entropy(forward(params, x, True), y)


def train_step_fn(forward, specs, params, x, y, anchor):
    trainable = [params[n] for n, _, t in specs if t]
    for t in trainable:
        t.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=5e-3, weight_decay=0.01)
    one = compiled(train_loss) if anchor == "compile" else train_loss
    return lambda: adam_step(opt, [lambda: one(forward, params, x, y)])


def adam_step(opt, losses):
    """One update: every loss backward (gradients accumulate), then the optimiser."""
    opt.zero_grad()
    total = 0.0
    for loss in losses:
        value = loss()
        value.backward()
        total += value.item()
    opt.step()
    return total


def compiled(fn):
    """`torch.compile` with its defaults (inductor; on CPU it generates C++/OpenMP kernels and
    fuses the elementwise work around the oneDNN / MKL calls)."""
    return torch.compile(fn)


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


def check_batched_layers():
    """Csordás's batched layers compute what the naive port computes chunk by chunk: K chunks,
    each through its own masked weights (both variants, K = 2, random weights and masks)."""
    for variant, size in (("official", 80), ("seed", 160)):
        torch.manual_seed(1)
        specs = official_specs(size) if variant == "official" else seed_specs(size)
        forward = official_forward if variant == "official" else seed_forward
        params, k, n = init_params(specs), 2, 2
        masks = {name: (torch.rand(k, *shape) > 0.3).float() for name, shape, trainable in specs if trainable}
        x = torch.rand(k * n, 16, size, size)
        with torch.no_grad():
            together = forward({m: t * masks[m] if m in masks else t for m, t in params.items()}, x, False, ops=BatchedOps())
            chunks = [forward({m: t * masks[m][c] if m in masks else t for m, t in params.items()}, x[c * n:(c + 1) * n], False)
                      for c in range(k)]
        want = torch.cat(chunks)
        diff = (together - want).abs().max().item() / max(1.0, want.abs().max().item())
        print(f"bench_pytorch check: batched layers = naive chunks ({variant} @{size}, K = {k}), max relative |Δ| = {diff:.1e}")
        if diff > 1e-5:
            sys.exit(f"bench_pytorch check: the batched-layer port of {variant} differs from the naive port by {diff}")


def step_seconds(step, steps):
    """The seconds of each of `steps` (at least one) calls of `step`, after the caller's warm-up."""
    seconds = []
    for _ in range(max(steps, 1)):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


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
        check(ap.parse_args().fixtures)
        return check_batched_layers()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["train", "mask"])
    ap.add_argument("--variant", choices=["official", "seed"], default="official")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anchor", choices=["naive", "compile", "batched"], default="naive",
                    help="naive eager port; the same under torch.compile; (mask) Csordás's batched layers")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    size = a.size or (80 if a.variant == "official" else 160)
    if a.batch % a.samples:
        sys.exit(f"bench_pytorch: batch {a.batch} is not divisible by {a.samples} samples")
    if a.anchor == "batched" and a.what != "mask":
        sys.exit("bench_pytorch: --anchor batched is a mask-training anchor (K weight samples per step)")
    torch.manual_seed(a.seed)
    specs = official_specs(size) if a.variant == "official" else seed_specs(size)
    forward = official_forward if a.variant == "official" else seed_forward
    params = init_params(specs)
    x = torch.rand(a.batch, 16, size, size)
    y = torch.randint(0, 8, (a.batch,))
    if a.what == "mask":
        step = mask_step_fn(forward, specs, params, x, y, a.samples, a.anchor)
    else:
        step = train_step_fn(forward, specs, params, x, y, a.anchor)
    # The compiled training loss must be the eager one on the same weights and panels.
    eager = train_loss(forward, params, x, y).item() if a.what == "train" else None
    # The first step of a compiled function includes its compilation: timed apart.
    start = time.perf_counter()
    first_loss = step()
    first = time.perf_counter() - start
    if eager is not None and abs(first_loss - eager) > 1e-4 * max(1.0, abs(eager)):
        sys.exit(f"bench_pytorch: {a.anchor} training loss {first_loss} differs from eager's {eager}")
    step()
    seconds = step_seconds(step, a.steps)
    median = statistics.median(seconds)
    report = {
        "bench": f"pytorch {a.what}", "anchor": a.anchor, "variant": a.variant, "image_size": size, "batch": a.batch,
        "samples": a.samples if a.what == "mask" else None, "steps": len(seconds), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "problems_per_s": a.batch / median,
        "problems_per_s_mean": a.batch * len(seconds) / sum(seconds), "median_step_s": median, "seconds": seconds,
        "first_step_s": first, "compile_s": max(first - median, 0.0) if a.anchor == "compile" else None,
    }
    if a.json:
        print(json.dumps(report))
    else:
        extra = f", compile {report['compile_s']:.1f} s" if a.anchor == "compile" else ""
        print(f"pytorch {a.what} {a.variant} @{size} ({a.anchor}): {report['problems_per_s']:.1f} problems/s (median step {median * 1e3:.1f} ms{extra}, torch {torch.__version__}, {report['threads']} threads)")


if __name__ == "__main__":
    main()
