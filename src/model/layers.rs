//! Functional building blocks shared by the SCL variants: each takes its parameters by name
//! from a [`Params`] map, so masked or K-batched weights can be substituted from outside.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Params;
use crate::Result;

/// The number format of the convolutions and matrix products (everything else, and every
/// weight, stays f32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout (the default; masks are always trained in f32).
    #[default]
    F32,
    /// PyTorch-autocast style for pre-training: each convolution and linear layer casts its
    /// input, weight and bias to bfloat16 and returns bf16 (so a chain of them, with ReLUs and
    /// BatchNorm between, stays bf16 in memory); LayerNorm and softmax cast their input up and
    /// compute in f32, BatchNorm's statistics and running averages are f32 (its mixed-type
    /// kernel), the logits and the loss are f32, and the f32 master weights receive f32
    /// gradients through the casts. The official SCL's first conv block, where the hand-written
    /// kernel applies (`model::fused`), stays f32: one input channel leaves it memory-bound.
    /// On this CPU's AVX-512-BF16 a bf16 GEMM runs ≈ 4× an f32 one; on a CPU without it,
    /// training refuses bf16 ([`Precision::check_native`]).
    Bf16,
}

impl Precision {
    /// Refuses bf16 on a CPU without native bf16 (AVX-512-BF16) when `device` is that CPU:
    /// there libtorch emulates it, two orders of magnitude slower than f32 (0.3 against
    /// 82 GFLOP/s measured on an AVX2 EPYC), so a bf16 run would only waste the machine.
    pub fn check_native(self, device: tch::Device) -> Result<()> {
        let simd = crate::session::simd_level();
        if self == Precision::Bf16 && device == tch::Device::Cpu && simd != "avx512_bf16" {
            return Err(crate::Error::Config(format!(
                "bf16 precision needs a GPU or a CPU with AVX-512-BF16; this CPU offers {simd}, \
                 where bf16 is emulated about 100× slower than f32: use f32"
            )));
        }
        Ok(())
    }
}

thread_local! {
    // Like PyTorch's autocast state: per thread, set for a scope (`in_precision`).
    static COMPUTE_PRECISION: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Restores the previous precision when the scope ends, also on an early return or a panic.
struct PrecisionScope(Precision);

impl Drop for PrecisionScope {
    fn drop(&mut self) {
        COMPUTE_PRECISION.with(|c| c.set(self.0));
    }
}

/// Runs `f` with the convolutions and linear layers of this thread in `precision`. The backward
/// pass may run outside the scope: the casts are recorded in the graph.
pub fn in_precision<T>(precision: Precision, f: impl FnOnce() -> T) -> T {
    let _restore = PrecisionScope(COMPUTE_PRECISION.with(|c| c.replace(precision)));
    f()
}

/// The precision the layers of this thread compute in now.
pub fn compute_precision() -> Precision {
    COMPUTE_PRECISION.with(|c| c.get())
}

/// `op` on `tensors` as they are (f32), or on their bf16 casts (a no-op for a tensor that is
/// bf16 already: the output of the previous layer).
fn in_compute_precision(
    tensors: [&Tensor; 3],
    op: impl FnOnce([&Tensor; 3]) -> std::result::Result<Tensor, tch::TchError>,
) -> Result<Tensor> {
    Ok(match compute_precision() {
        Precision::F32 => op(tensors)?,
        Precision::Bf16 => {
            let [a, b, c] = tensors.map(|t| t.to_kind(Kind::BFloat16));
            op([&a, &b, &c])?
        }
    })
}

/// Whether BatchNorm uses batch statistics (and updates its running buffers) or the stored
/// running statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnMode {
    /// Batch statistics; the running mean and variance are updated (momentum 0.1). Needs plain
    /// (not K-batched) BatchNorm weights.
    Train,
    /// The stored running statistics; BatchNorm is then folded into the preceding convolution.
    Eval,
}

// K-batched weights (masking): a weight with one extra leading axis of size K holds K mask
// samples; the batch is then split into K contiguous chunks, chunk k using sample k. Every SCL
// op keeps the batch as the leading axis, so a chunk stays contiguous through the network.

/// Number of weight samples if `w` has `plain_dims + 1` axes, else `None`.
fn samples(w: &Tensor, plain_dims: usize) -> Option<i64> {
    (w.dim() == plain_dims + 1).then(|| w.size()[0])
}

/// `x` `(K·n, …)` viewed as `(K, n, …)`.
fn split_chunks(x: &Tensor, k: i64) -> Result<Tensor> {
    let n = x.size()[0];
    if n % k != 0 {
        return Err(crate::Error::Config(format!(
            "batch of {n} cannot be split into {k} mask-sample chunks"
        )));
    }
    let mut shape = vec![k, n / k];
    shape.extend_from_slice(&x.size()[1..]);
    Ok(x.reshape(shape.as_slice()))
}

/// Broadcasts a per-sample vector `(K, C)` against `(K, n, …)` activations along `axis` (≥ 2).
fn per_sample(v: &Tensor, dims: usize, axis: usize) -> Tensor {
    let (k, c) = (v.size()[0], v.size()[1]);
    let mut shape = vec![1i64; dims];
    shape[0] = k;
    shape[axis] = c;
    v.reshape(shape.as_slice())
}

/// Runs `stage` on each of the K batch chunks with that chunk's mask sample, and concatenates.
/// Used for the convolutional stacks: on CPU, K plain convolutions (eval BatchNorm folded into
/// each, see [`conv_s2_bn`]) run as fast as or faster than one grouped convolution over the
/// chunks stacked along channels, and need no transposes (BENCHMARKS.md). `probe` is a weight that is K-batched iff masks are sampled;
/// `specs` gives every tensor's unbatched rank.
///
/// # Shapes
/// - `x`: `(K·n, …)` when `probe` has `plain_dims + 1` axes (K samples), else any shape, passed
///   to `stage` whole;
/// - output: `stage`'s output on each `(n, …)` chunk, concatenated along axis 0 (`(K·n, …')`).
pub fn chunked_by_sample(
    p: &Params,
    specs: &[super::ParamSpec],
    probe: &str,
    plain_dims: usize,
    x: &Tensor,
    stage: impl Fn(&Params, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let Some(k) = samples(p.get(probe)?, plain_dims) else {
        return stage(p, x);
    };
    let chunks = split_chunks(x, k)?;
    let dims: std::collections::HashMap<&str, usize> = specs
        .iter()
        .map(|s| (s.name.as_str(), s.shape.len()))
        .collect();
    let plain = |name: &str| dims.get(name).copied().unwrap_or(0);
    let outs = (0..k)
        .map(|i| stage(&p.sample(i, plain), &chunks.get(i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&outs, 0))
}

/// `x @ W^T + b` with `prefix.weight`, `prefix.bias` (K-batched via `bmm`).
///
/// # Shapes
/// - `prefix.weight`: `[d_out, d_in]`, or `(K, d_out, d_in)` K-batched;
/// - `prefix.bias`: `[d_out]`, or `(K, d_out)` K-batched;
/// - `x`: `(N, …, d_in)`, with `N = K·n` when K-batched (chunk k uses sample k);
/// - output: `(N, …, d_out)`.
pub fn linear(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    linear_then(p, prefix, x, false)
}

/// `relu(x @ W^T + b)`, the ReLU in place on the product itself.
///
/// Why not `linear(..)?.relu_()`: the K-batched product comes back reshaped, i.e. as a view, and
/// an in-place op on a view makes autograd rebase it (`CopySlices` + `AsStridedBackward`: a
/// zeroed buffer and two extra full-size copies in the backward — for the relation experts'
/// 64-wide hidden layer, 26 MB each per step). A linear layer's backward needs its input, not
/// its output, so the ReLU may overwrite the product.
///
/// # Shapes
/// As [`linear`]: `x` `(N, …, d_in)` → `(N, …, d_out)`, `N = K·n` with K-batched weights.
pub fn linear_relu(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    linear_then(p, prefix, x, true)
}

fn linear_then(p: &Params, prefix: &str, x: &Tensor, relu: bool) -> Result<Tensor> {
    let w = p.get(&format!("{prefix}.weight"))?;
    let b = p.get(&format!("{prefix}.bias"))?;
    let activate = |mut y: Tensor| if relu { y.relu_() } else { y };
    let Some(k) = samples(w, 2) else {
        let y = in_compute_precision([x, w, b], |[x, w, b]| x.f_linear(w, Some(b)))?;
        return Ok(activate(y));
    };
    let d_in = *x.size().last().expect("linear input has axes");
    let chunks = split_chunks(x, k)?.reshape([k, -1, d_in]);
    let y = activate(in_compute_precision([&chunks, w, b], |[x, w, b]| {
        b.unsqueeze(1).f_baddbmm(x, &w.transpose(1, 2), 1.0, 1.0)
    })?);
    let mut shape = x.size();
    *shape.last_mut().expect("axes") = w.size()[1];
    Ok(y.reshape(shape.as_slice()))
}

/// 3×3 convolution, stride 2, padding 1 (every conv of both SCL variants). K-batched weights
/// convolve each chunk with its own kernel. (A grouped convolution over the chunks stacked along
/// channels is the textbook trick, but on CPU its transposes cost more than they save: measured
/// 34 vs 53 problems/s for seed SCL at 160 px, see BENCHMARKS.md.)
///
/// # Shapes
/// - `prefix.weight`: `[C_out, C_in, 3, 3]`, or `(K, C_out, C_in, 3, 3)` K-batched;
/// - `prefix.bias`: `[C_out]`, or `(K, C_out)` K-batched;
/// - `x`: `(N, C_in, H, W)`, with `N = K·n` when K-batched;
/// - output: `(N, C_out, ⌈H/2⌉, ⌈W/2⌉)`.
pub fn conv_s2(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    conv_s2_with(
        p.get(&format!("{prefix}.weight"))?,
        p.get(&format!("{prefix}.bias"))?,
        x,
    )
}

fn conv_s2_with(w: &Tensor, b: &Tensor, x: &Tensor) -> Result<Tensor> {
    let conv = |[x, w, b]: [&Tensor; 3]| x.f_conv2d(w, Some(b), [2, 2], [1, 1], [1, 1], 1);
    let Some(k) = samples(w, 4) else {
        return in_compute_precision([x, w, b], conv);
    };
    let chunks = split_chunks(x, k)?;
    let outs = (0..k)
        .map(|i| in_compute_precision([&chunks.get(i), &w.get(i), &b.get(i)], conv))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&outs, 0))
}

/// `x · input_scale`, then [`conv_s2`] at `conv`, then BatchNorm at `bn` when given.
///
/// In eval mode BatchNorm is a per-channel affine map, so it is folded into the convolution:
/// `conv(x, W·s·input_scale) + (b − μ)·s + β` with `s = γ/√(σ² + ε)`. That is one pass over the
/// activations instead of three (scale, conv, norm) in the forward and in the backward, exact up
/// to float rounding; gradients still reach W, b, γ and β (and their masks) through the fold.
///
/// # Shapes
/// - `x`: `(N, C_in, H, W)`, with `N = K·n` when the weights are K-batched (eval mode only);
/// - `conv` parameters as in [`conv_s2`]; `bn` parameters `[C_out]` (or `(K, C_out)`);
/// - output: `(N, C_out, ⌈H/2⌉, ⌈W/2⌉)`.
pub fn conv_s2_bn(
    p: &Params,
    conv: &str,
    bn: Option<&str>,
    x: &Tensor,
    mode: BnMode,
    input_scale: f64,
) -> Result<Tensor> {
    let (w, b) = (
        p.get(&format!("{conv}.weight"))?,
        p.get(&format!("{conv}.bias"))?,
    );
    let scaled = |t: &Tensor| {
        if input_scale == 1.0 {
            t.shallow_clone()
        } else {
            t * input_scale
        }
    };
    let Some(bn) = bn else {
        return conv_s2_with(&scaled(w), b, x);
    };
    if mode == BnMode::Train {
        let h = conv_s2_with(w, b, &scaled(x))?;
        return batch_norm(p, bn, &h, mode);
    }
    let get = |k: &str| p.get(&format!("{bn}.{k}"));
    let scale = get("weight")? * (get("running_var")? + 1e-5).rsqrt(); // (C) or (K, C)
    let folded_w = w
        * (&scale * input_scale)
            .unsqueeze(-1)
            .unsqueeze(-1)
            .unsqueeze(-1);
    let folded_b = (b - get("running_mean")?) * &scale + get("bias")?;
    conv_s2_with(&folded_w, &folded_b, x)
}

/// `x` `(N, C, H, W)` in channels-last memory order (NHWC strides, same logical shape): oneDNN's
/// convolutions run about 1.5× faster on it here, and their outputs stay channels-last. A
/// contiguous single-channel tensor already is NHWC in memory, so it only gets new strides.
///
/// # Shapes
/// - `x`: `(N, C, H, W)`;
/// - output: `(N, C, H, W)`, strides `(H·W·C, 1, W·C, C)`.
pub fn channels_last(x: &Tensor) -> Tensor {
    let size = x.size();
    if size.len() == 4 && size[1] == 1 && x.is_contiguous() {
        let (h, w) = (size[2], size[3]);
        return x.as_strided(size.as_slice(), [h * w, 1, w, 1], None);
    }
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// BatchNorm2d (eps 1e-5, momentum 0.1) with `weight`, `bias`, `running_mean`, `running_var`,
/// for [`conv_s2_bn`] in train mode. K-batched (masked) weights only occur in eval mode, where
/// BatchNorm is folded into the convolution instead.
fn batch_norm(p: &Params, prefix: &str, x: &Tensor, mode: BnMode) -> Result<Tensor> {
    let get = |k: &str| p.get(&format!("{prefix}.{k}"));
    let (w, b) = (get("weight")?, get("bias")?);
    if samples(w, 1).is_some() {
        return Err(crate::Error::Config(format!(
            "{prefix}: K-batched BatchNorm weights need eval mode"
        )));
    }
    Ok(x.f_batch_norm(
        Some(w),
        Some(b),
        Some(get("running_mean")?),
        Some(get("running_var")?),
        mode == BnMode::Train,
        BN_MOMENTUM,
        1e-5,
        true,
    )?)
}

/// The momentum of every BatchNorm's running averages (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// The kind norms and softmaxes compute in: f32 for the 16-bit kinds (autocast's rule), the
/// kind itself otherwise (an f64 reference model stays f64).
pub fn at_least_f32(kind: Kind) -> Kind {
    match kind {
        Kind::BFloat16 | Kind::Half => Kind::Float,
        kind => kind,
    }
}

/// LayerNorm over the last axis (eps 1e-5) with `weight`, `bias` (K-batched affine allowed).
///
/// # Shapes
/// - `prefix.weight`, `prefix.bias`: `[D]`, or `(K, D)` K-batched;
/// - `x`: `(N, …, D)`, with `N = K·n` when K-batched;
/// - output: `(N, …, D)`.
pub fn layer_norm(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    let w = p.get(&format!("{prefix}.weight"))?;
    let b = p.get(&format!("{prefix}.bias"))?;
    let d = *w.size().last().expect("norm weight has an axis");
    if d == 1 {
        // Over a single value, x − mean(x) is exactly 0: the output is β whatever x, γ are (and
        // PyTorch's gradients to x and γ are exactly 0). SCL's FCResBlock(1) in each relation
        // expert hits this; skipping the statistics saves two passes per expert.
        return Ok(match samples(w, 1) {
            None => b.expand(x.size().as_slice(), false),
            Some(k) => {
                let chunks = split_chunks(x, k)?;
                let dims = chunks.dim();
                per_sample(b, dims, dims - 1)
                    .expand(chunks.size().as_slice(), false)
                    .reshape(x.size().as_slice())
            }
        });
    }
    // In f32 at least, whatever the compute precision (autocast's rule for norms).
    let x = &x.to_kind(at_least_f32(x.kind()));
    let Some(k) = samples(w, 1) else {
        return Ok(x.f_layer_norm([d], Some(w), Some(b), 1e-5, true)?);
    };
    let normed = x.f_layer_norm([d], None::<&Tensor>, None::<&Tensor>, 1e-5, true)?;
    let chunks = split_chunks(&normed, k)?;
    let dims = chunks.dim();
    Ok(
        (chunks * per_sample(w, dims, dims - 1) + per_sample(b, dims, dims - 1))
            .reshape(x.size().as_slice()),
    )
}

/// lucidrains' `FeedForwardResidual`: `x + net.3(relu(net.1(net.0(x))))` (LayerNorm at `net.1`).
///
/// # Shapes
/// - `net.0.weight`: `[D_h, D]`, `net.1`: `[D_h]`, `net.3.weight`: `[D, D_h]` (each with a
///   leading K when K-batched);
/// - `x`: `(N, …, D)`, with `N = K·n` when K-batched;
/// - output: `(N, …, D)`.
pub fn feed_forward_residual(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    let h = linear(p, &format!("{prefix}.net.0"), x)?;
    let h = layer_norm(p, &format!("{prefix}.net.1"), &h)?.relu();
    Ok(x + linear(p, &format!("{prefix}.net.3"), &h)?)
}

/// lucidrains' `MLP`: Linear layers at even indices `net.0, net.2, …`, ReLU between, none after
/// the last.
///
/// # Shapes
/// - `net.{2i}.weight`: `[d_{i+1}, d_i]` for `i` in `0..layers` (a leading K when K-batched);
/// - `x`: `(N, …, d_0)`, with `N = K·n` when K-batched;
/// - output: `(N, …, d_layers)`.
pub fn mlp(p: &Params, prefix: &str, layers: usize, x: &Tensor) -> Result<Tensor> {
    let mut h = x.shallow_clone();
    for i in 0..layers {
        let name = format!("{prefix}.net.{}", 2 * i);
        h = if i + 1 < layers {
            linear_relu(p, &name, &h)?
        } else {
            linear(p, &name, &h)?
        };
    }
    Ok(h)
}
