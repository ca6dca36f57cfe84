//! Functional building blocks shared by the SCL variants: each takes its parameters by name
//! from a [`Params`] map, so masked or K-batched weights can be substituted from outside.

use tch::Tensor;

use super::Params;
use crate::Result;

/// Whether BatchNorm uses batch statistics (and updates its running buffers) or the stored
/// running statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnMode {
    Train,
    Eval,
}

/// `x @ W^T + b` with `prefix.weight`, `prefix.bias`.
pub fn linear(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    let w = p.get(&format!("{prefix}.weight"))?;
    let b = p.get(&format!("{prefix}.bias"))?;
    Ok(x.f_linear(w, Some(b))?)
}

/// 3×3 convolution, stride 2, padding 1 (every conv of both SCL variants).
pub fn conv_s2(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    let w = p.get(&format!("{prefix}.weight"))?;
    let b = p.get(&format!("{prefix}.bias"))?;
    Ok(x.f_conv2d(w, Some(b), [2, 2], [1, 1], [1, 1], 1)?)
}

/// BatchNorm2d (eps 1e-5, momentum 0.1) with `weight`, `bias`, `running_mean`, `running_var`.
pub fn batch_norm(p: &Params, prefix: &str, x: &Tensor, mode: BnMode) -> Result<Tensor> {
    let get = |k: &str| p.get(&format!("{prefix}.{k}"));
    Ok(x.f_batch_norm(Some(get("weight")?), Some(get("bias")?), Some(get("running_mean")?), Some(get("running_var")?), mode == BnMode::Train, 0.1, 1e-5, true)?)
}

/// LayerNorm over the last axis (eps 1e-5) with `weight`, `bias`.
pub fn layer_norm(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    let w = p.get(&format!("{prefix}.weight"))?;
    let b = p.get(&format!("{prefix}.bias"))?;
    Ok(x.f_layer_norm([w.size()[0]], Some(w), Some(b), 1e-5, true)?)
}

/// lucidrains' `FeedForwardResidual`: `x + net.3(relu(net.1(net.0(x))))` (LayerNorm at `net.1`).
pub fn feed_forward_residual(p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
    let h = linear(p, &format!("{prefix}.net.0"), x)?;
    let h = layer_norm(p, &format!("{prefix}.net.1"), &h)?.relu();
    Ok(x + linear(p, &format!("{prefix}.net.3"), &h)?)
}

/// lucidrains' `MLP`: Linear layers at even indices `net.0, net.2, …`, ReLU between, none after
/// the last.
pub fn mlp(p: &Params, prefix: &str, layers: usize, x: &Tensor) -> Result<Tensor> {
    let mut h = x.shallow_clone();
    for i in 0..layers {
        h = linear(p, &format!("{prefix}.net.{}", 2 * i), &h)?;
        if i + 1 < layers {
            h = h.relu();
        }
    }
    Ok(h)
}
