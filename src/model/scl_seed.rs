//! SCL, `seed` variant: lucidrains' `scattering-transform` SCL as used by the AVR study.
//!
//! Paper: Wu et al., "The Scattering Compositional Learner", 2020; code: lucidrains/
//! scattering-transform (`models/SCL_model.py` in the study). Parameter names and shapes are the
//! study's state-dict keys without the `scl.` prefix (199,838 trainable scalars at 160×160).
//!
//! - perception `vision.net.*`: 5 convs (3×3, stride 2) with BatchNorm after the first four and
//!   **no ReLU** between them, flatten (32·s·s), `Linear(→80)`, ReLU, FeedForwardResidual(80);
//! - `attr_net`: one MLP 8→128→8 shared by the 10 contiguous groups of the 80 features;
//! - `ff_residual`: FeedForwardResidual(80);
//! - `rel_net`: MLP 9→64→32→5 shared by the 80 attributes, over (8 context + 1 candidate);
//! - `to_logit`: Linear(400→1) per candidate.
//!
//! # Shapes
//! Input `(B, 16, H, W)` float in [0, 1] (8 context panels then 8 candidates), output logits
//! `(B, 8)`. The study encodes each context panel 8 times (72 encodes per problem); with
//! eval-mode BatchNorm that equals encoding the 16 panels once, which [`forward`] does.
//! [`forward_72`] keeps the study's path (needed for train-mode BN parity).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::layers::{
    channels_last, chunked_by_sample, conv_s2_bn, feed_forward_residual, linear, mlp, BnMode,
};
use super::{ParamSpec, Params};
use crate::{Error, Result};

/// Hyper-parameters of the seed SCL; defaults are the study's (checkpoint `kwargs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSclConfig {
    /// Panel side in pixels; must be a multiple of 32 (default 160).
    pub image_size: i64,
    /// Conv channels including the input channel (default `[1, 16, 16, 32, 32, 32]`).
    pub conv_channels: Vec<i64>,
    /// Width of the panel embedding (default 80).
    pub conv_output_dim: i64,
    /// Attribute groups of the scattering transform (default 10).
    pub attr_heads: i64,
    /// Hidden width of the attribute MLP (default 128).
    pub attr_hidden: i64,
    /// Relation MLP widths after the 9 inputs (default `[64, 32, 5]`; the study's notebook typo
    /// `[64, 23, 5]` does not match its checkpoint).
    pub rel_net_hidden_dims: Vec<i64>,
}

impl Default for SeedSclConfig {
    fn default() -> Self {
        SeedSclConfig {
            image_size: 160,
            conv_channels: vec![1, 16, 16, 32, 32, 32],
            conv_output_dim: 80,
            attr_heads: 10,
            attr_hidden: 128,
            rel_net_hidden_dims: vec![64, 32, 5],
        }
    }
}

impl SeedSclConfig {
    /// Refuses sizes that no model can have (checked before any tensor is made, so a bad
    /// checkpoint's settings give an error, not a panic).
    pub fn check(&self) -> Result<()> {
        let sizes = [
            self.image_size,
            self.conv_output_dim,
            self.attr_heads,
            self.attr_hidden,
        ];
        let lists = self.conv_channels.iter().chain(&self.rel_net_hidden_dims);
        if sizes.iter().chain(lists).any(|&v| v <= 0) || self.rel_net_hidden_dims.is_empty() {
            return Err(Error::Architecture(format!(
                "seed SCL: every size must be positive: {self:?}"
            )));
        }
        let convs = self.conv_channels.len() as i64 - 1;
        if !(1..=16).contains(&convs) || self.image_size % (1 << convs) != 0 {
            return Err(Error::Architecture(format!(
                "seed SCL: image_size {} must be a multiple of 2^{convs}",
                self.image_size
            )));
        }
        if self.conv_output_dim % self.attr_heads != 0 {
            return Err(Error::Architecture(
                "seed SCL: conv_output_dim must be divisible by attr_heads".into(),
            ));
        }
        Ok(())
    }

    /// Spatial side after the conv stack.
    fn conv_out_side(&self) -> i64 {
        self.image_size >> (self.conv_channels.len() - 1)
    }

    /// Every parameter and buffer, in PyTorch `state_dict()` order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut specs = Vec::new();
        let mut push = |name: String, shape: Vec<i64>, trainable: bool| {
            specs.push(ParamSpec {
                name,
                shape,
                trainable,
            })
        };
        let ch = &self.conv_channels;
        let convs = ch.len() - 1;
        for i in 0..convs {
            let conv = format!("vision.net.{}", 2 * i);
            push(format!("{conv}.weight"), vec![ch[i + 1], ch[i], 3, 3], true);
            push(format!("{conv}.bias"), vec![ch[i + 1]], true);
            if i + 1 < convs {
                let bn = format!("vision.net.{}", 2 * i + 1);
                push(format!("{bn}.weight"), vec![ch[i + 1]], true);
                push(format!("{bn}.bias"), vec![ch[i + 1]], true);
                push(format!("{bn}.running_mean"), vec![ch[i + 1]], false);
                push(format!("{bn}.running_var"), vec![ch[i + 1]], false);
            }
        }
        let d = self.conv_output_dim;
        let flat = ch[convs] * self.conv_out_side() * self.conv_out_side();
        let head = 2 * convs; // Flatten at 2·convs − 1, Linear at 2·convs, ReLU, FFR at +2
        push(format!("vision.net.{head}.weight"), vec![d, flat], true);
        push(format!("vision.net.{head}.bias"), vec![d], true);
        let ffr = |prefix: String, push: &mut dyn FnMut(String, Vec<i64>, bool)| {
            push(format!("{prefix}.net.0.weight"), vec![4 * d, d], true);
            push(format!("{prefix}.net.0.bias"), vec![4 * d], true);
            push(format!("{prefix}.net.1.weight"), vec![4 * d], true);
            push(format!("{prefix}.net.1.bias"), vec![4 * d], true);
            push(format!("{prefix}.net.3.weight"), vec![d, 4 * d], true);
            push(format!("{prefix}.net.3.bias"), vec![d], true);
        };
        ffr(format!("vision.net.{}", head + 2), &mut push);
        let g = d / self.attr_heads;
        push(
            "attr_net.mlp.net.0.weight".into(),
            vec![self.attr_hidden, g],
            true,
        );
        push(
            "attr_net.mlp.net.0.bias".into(),
            vec![self.attr_hidden],
            true,
        );
        push(
            "attr_net.mlp.net.2.weight".into(),
            vec![g, self.attr_hidden],
            true,
        );
        push("attr_net.mlp.net.2.bias".into(), vec![g], true);
        ffr("ff_residual".into(), &mut push);
        let mut width = 9;
        for (i, &h) in self.rel_net_hidden_dims.iter().enumerate() {
            push(
                format!("rel_net.net.{}.weight", 2 * i),
                vec![h, width],
                true,
            );
            push(format!("rel_net.net.{}.bias", 2 * i), vec![h], true);
            width = h;
        }
        push("to_logit.weight".into(), vec![1, width * d], true);
        push("to_logit.bias".into(), vec![1], true);
        specs
    }
}

/// Panel embeddings `(N, 80)` for panels `(N, 1, H, W)`: vision, attribute net, residual.
///
/// # Shapes
/// - `panels`: `(N, 1, S, S)` f32 in [0, 1], `S = cfg.image_size`; with K-batched weights
///   `N = K·n`, chunk k (rows `k·n..(k+1)·n`) using sample k;
/// - conv stack output: `(N, C, s, s)`, `C = conv_channels.last()`, `s = S / 2^convs`,
///   flattened to `(N, C·s·s)`;
/// - attribute groups: `(N, attr_heads, conv_output_dim / attr_heads)`;
/// - output: `(N, conv_output_dim)`.
pub fn encode_panels(
    cfg: &SeedSclConfig,
    p: &Params,
    panels: &Tensor,
    bn: BnMode,
) -> Result<Tensor> {
    let convs = cfg.conv_channels.len() - 1;
    let h = chunked_by_sample(
        p,
        &cfg.param_specs(),
        "vision.net.0.weight",
        4,
        panels,
        |p, x| conv_stack(convs, p, x, bn),
    )?;
    let head = 2 * convs;
    let h = linear(p, &format!("vision.net.{head}"), &h.flatten(1, -1))?.relu();
    let h = feed_forward_residual(p, &format!("vision.net.{}", head + 2), &h)?;
    let n = h.size()[0];
    let groups = h.reshape([n, cfg.attr_heads, cfg.conv_output_dim / cfg.attr_heads]);
    let h = mlp(p, "attr_net.mlp", 2, &groups)?.reshape([n, cfg.conv_output_dim]);
    feed_forward_residual(p, "ff_residual", &h)
}

/// `convs` × [conv 3×3 s2, BatchNorm (not after the last)].
fn conv_stack(convs: usize, p: &Params, panels: &Tensor, bn: BnMode) -> Result<Tensor> {
    let mut h = channels_last(panels);
    for i in 0..convs {
        let norm = (i + 1 < convs).then(|| format!("vision.net.{}", 2 * i + 1));
        h = conv_s2_bn(
            p,
            &format!("vision.net.{}", 2 * i),
            norm.as_deref(),
            &h,
            bn,
            1.0,
        )?;
    }
    Ok(h)
}

/// Scores the 8 candidate sets given their panel embeddings `(B, 8, 9, D)`.
fn score_sets(cfg: &SeedSclConfig, p: &Params, sets: &Tensor) -> Result<Tensor> {
    let (b, m) = (sets.size()[0], sets.size()[1]);
    let per_attribute = sets.transpose(2, 3); // (B, 8, D, 9)
    let rel = mlp(p, "rel_net", cfg.rel_net_hidden_dims.len(), &per_attribute)?; // (B, 8, D, r)
    Ok(linear(p, "to_logit", &rel.reshape([b, m, -1]))?.reshape([b, m]))
}

fn check_input(cfg: &SeedSclConfig, x: &Tensor) -> Result<(i64, i64)> {
    cfg.check()?;
    let size = x.size();
    if size.len() != 4 || size[1] != 16 || size[2] != cfg.image_size || size[3] != cfg.image_size {
        return Err(Error::InputShape(format!(
            "seed SCL expects (B, 16, {s}, {s}) panels, got {size:?}",
            s = cfg.image_size
        )));
    }
    Ok((size[0], size[2]))
}

/// Logits `(B, 8)`: each of the 16 panels encoded once, then the 8 sets assembled.
///
/// # Shapes
/// - `x`: `(B, 16, S, S)` f32 in [0, 1], `S = cfg.image_size` (8 context panels, then 8
///   candidates); with K-batched weights `B = K·n`, problems `k·n..(k+1)·n` using sample k;
/// - panel embeddings: `(B, 16, D)`, `D = conv_output_dim` ([`encode_panels`] on
///   `(16·B, 1, S, S)`);
/// - candidate sets: `(B, 8, 9, D)` (the 8 context panels plus one candidate each);
/// - relation net output: `(B, 8, D, r)`, `r = rel_net_hidden_dims.last()`;
/// - output: logits `(B, 8)`, one per candidate.
pub fn forward(cfg: &SeedSclConfig, p: &Params, x: &Tensor, bn: BnMode) -> Result<Tensor> {
    let (b, s) = check_input(cfg, x)?;
    let emb = encode_panels(cfg, p, &x.reshape([b * 16, 1, s, s]), bn)?.reshape([b, 16, -1]);
    let d = emb.size()[2];
    let context = emb.narrow(1, 0, 8).unsqueeze(1).expand([b, 8, 8, d], false);
    let candidates = emb.narrow(1, 8, 8).unsqueeze(2);
    score_sets(cfg, p, &Tensor::cat(&[context, candidates], 2))
}

/// Logits `(B, 8)` the study's way: 72 panel encodes per problem (8 sets of 9 panels).
///
/// # Shapes
/// - `x`: `(B, 16, S, S)` as in [`forward`];
/// - encoded panels: `(72·B, 1, S, S)` → embeddings `(B, 8, 9, D)`;
/// - output: logits `(B, 8)`.
pub fn forward_72(cfg: &SeedSclConfig, p: &Params, x: &Tensor, bn: BnMode) -> Result<Tensor> {
    let (b, s) = check_input(cfg, x)?;
    let context = x
        .narrow(1, 0, 8)
        .unsqueeze(1)
        .expand([b, 8, 8, s, s], false);
    let candidates = x.narrow(1, 8, 8).unsqueeze(2);
    let sets = Tensor::cat(&[context, candidates], 2).reshape([b * 72, 1, s, s]);
    let emb = encode_panels(cfg, p, &sets, bn)?.reshape([b, 8, 9, -1]);
    score_sets(cfg, p, &emb)
}
