//! SCL, `official` variant: Wu et al., "The Scattering Compositional Learner" (dhh1995/SCL,
//! README command), the default for new training: stronger and much cheaper than `seed`.
//!
//! - perception (`visual.*`): 4 × [conv 3×3 s2 → BatchNorm → ReLU] (16-16-32-32 channels), a
//!   per-channel spatial `Linear(h·w → 80)` shared by all channels, scattering into 10 groups of
//!   32 channels × 8 positions (channel-major, 256 values), a shared MLP 256→128→8 and an
//!   FCResBlock(8) per group;
//! - relational (`rel.*`): FCResBlock(80) per panel, then for each of the 8 candidate sets and
//!   each of the 80 attributes, 5 expert MLPs 9→64→32→1 (+ FCResBlock(1)), softmax over experts;
//! - scorer (`scorer.*`): MLP 400→128→1 per candidate.
//!
//! 137,286 parameters at 160×160, 131,286 at 80×80. Names are ours (the official code's module
//! tree is not in the fixtures); they follow its structure.
//!
//! # Shapes
//! Input `(B, 16, H, W)` float in [0, 1]; the official model reads raw 0–255 pixels, so the
//! forward pass scales by 255 first. Output logits `(B, 8)`.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::layers::{
    at_least_f32, channels_last, chunked_by_sample, conv_s2_bn, layer_norm, linear, linear_relu,
    BnMode,
};
use super::{ParamSpec, Params};
use crate::{Error, Result};

/// Hyper-parameters of the official SCL (README values as defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfficialSclConfig {
    /// Panel side in pixels (default 80; the README command's argparse default is 160).
    pub image_size: i64,
    /// Conv channels after each block (default `[16, 16, 32, 32]`).
    pub channels: Vec<i64>,
    /// Panel embedding width = groups × group output (default 80).
    pub features: i64,
    /// Attribute groups (default 10).
    pub groups: i64,
    /// Hidden width of the attribute MLP (default 128).
    pub attr_hidden: i64,
    /// Number of relation experts (default 5).
    pub experts: i64,
    /// Hidden widths of each expert MLP (default `[64, 32]`).
    pub expert_hidden: Vec<i64>,
    /// Hidden width of the scorer (default 128).
    pub scorer_hidden: i64,
}

impl Default for OfficialSclConfig {
    fn default() -> Self {
        OfficialSclConfig {
            image_size: 80,
            channels: vec![16, 16, 32, 32],
            features: 80,
            groups: 10,
            attr_hidden: 128,
            experts: 5,
            expert_hidden: vec![64, 32],
            scorer_hidden: 128,
        }
    }
}

fn linear_spec(out: &mut Vec<ParamSpec>, name: &str, d_in: i64, d_out: i64) {
    out.push(ParamSpec {
        name: format!("{name}.weight"),
        shape: vec![d_out, d_in],
        trainable: true,
    });
    out.push(ParamSpec {
        name: format!("{name}.bias"),
        shape: vec![d_out],
        trainable: true,
    });
}

fn norm_spec(out: &mut Vec<ParamSpec>, name: &str, d: i64, running: bool) {
    out.push(ParamSpec {
        name: format!("{name}.weight"),
        shape: vec![d],
        trainable: true,
    });
    out.push(ParamSpec {
        name: format!("{name}.bias"),
        shape: vec![d],
        trainable: true,
    });
    if running {
        out.push(ParamSpec {
            name: format!("{name}.running_mean"),
            shape: vec![d],
            trainable: false,
        });
        out.push(ParamSpec {
            name: format!("{name}.running_var"),
            shape: vec![d],
            trainable: false,
        });
    }
}

/// FCResBlock(d): `ln_in`, `fc1`, `ln_out`, `fc2`.
fn res_block_spec(out: &mut Vec<ParamSpec>, name: &str, d: i64) {
    norm_spec(out, &format!("{name}.ln_in"), d, false);
    linear_spec(out, &format!("{name}.fc1"), d, d);
    norm_spec(out, &format!("{name}.ln_out"), d, false);
    linear_spec(out, &format!("{name}.fc2"), d, d);
}

/// `y = x + fc2(relu(ln_out(fc1(relu(ln_in(x))))))` on the last axis.
fn res_block(p: &Params, name: &str, x: &Tensor) -> Result<Tensor> {
    let h = layer_norm(p, &format!("{name}.ln_in"), x)?.relu();
    let h = linear(p, &format!("{name}.fc1"), &h)?;
    let h = layer_norm(p, &format!("{name}.ln_out"), &h)?.relu();
    Ok(x + linear(p, &format!("{name}.fc2"), &h)?)
}

impl OfficialSclConfig {
    /// Spatial side after the conv blocks: `(h + 1) / 2` per block.
    pub fn conv_out_side(&self) -> i64 {
        self.channels
            .iter()
            .fold(self.image_size, |s, _| (s + 1) / 2)
    }

    /// Refuses sizes that no model can have (checked before any tensor is made).
    pub fn check(&self) -> Result<()> {
        let sizes = [
            self.image_size,
            self.features,
            self.groups,
            self.attr_hidden,
        ];
        let more = [self.experts, self.scorer_hidden];
        let lists = self.channels.iter().chain(&self.expert_hidden);
        if sizes.iter().chain(&more).chain(lists).any(|&v| v <= 0) || self.channels.is_empty() {
            return Err(Error::Architecture(format!(
                "official SCL: every size must be positive: {self:?}"
            )));
        }
        if self.features % self.groups != 0 {
            return Err(Error::Architecture(format!(
                "official SCL: features {} must be divisible by groups {}",
                self.features, self.groups
            )));
        }
        Ok(())
    }

    fn group_out(&self) -> i64 {
        self.features / self.groups
    }

    /// Every parameter and buffer, in order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut s = Vec::new();
        let mut c_in = 1;
        for (i, &c) in self.channels.iter().enumerate() {
            s.push(ParamSpec {
                name: format!("visual.conv.{i}.weight"),
                shape: vec![c, c_in, 3, 3],
                trainable: true,
            });
            s.push(ParamSpec {
                name: format!("visual.conv.{i}.bias"),
                shape: vec![c],
                trainable: true,
            });
            norm_spec(&mut s, &format!("visual.bn.{i}"), c, true);
            c_in = c;
        }
        let side = self.conv_out_side();
        linear_spec(&mut s, "visual.spatial", side * side, self.features);
        let group_in = c_in * self.group_out();
        linear_spec(&mut s, "visual.attr_mlp.0", group_in, self.attr_hidden);
        linear_spec(
            &mut s,
            "visual.attr_mlp.1",
            self.attr_hidden,
            self.group_out(),
        );
        res_block_spec(&mut s, "visual.attr_res", self.group_out());
        res_block_spec(&mut s, "rel.res", self.features);
        for e in 0..self.experts {
            let mut d = 9;
            for (j, &h) in self.expert_hidden.iter().enumerate() {
                linear_spec(&mut s, &format!("rel.experts.{e}.mlp.{j}"), d, h);
                d = h;
            }
            linear_spec(
                &mut s,
                &format!("rel.experts.{e}.mlp.{}", self.expert_hidden.len()),
                d,
                1,
            );
            res_block_spec(&mut s, &format!("rel.experts.{e}.res"), 1);
        }
        linear_spec(
            &mut s,
            "scorer.0",
            self.features * self.experts,
            self.scorer_hidden,
        );
        linear_spec(&mut s, "scorer.1", self.scorer_hidden, 1);
        s
    }
}

/// Panel embeddings `(N, features)` for panels `(N, 1, H, W)` in [0, 1]: the conv stack
/// ([`conv_block`] × 4), then [`panel_attributes`].
///
/// # Shapes
/// - `panels`: `(N, 1, S, S)` f32 in [0, 1], `S = cfg.image_size`; with K-batched weights
///   `N = K·n`, chunk k (rows `k·n..(k+1)·n`) using sample k;
/// - conv stack output: `(N, C, s, s)`, `C = channels.last()`, `s = conv_out_side()`;
/// - output: `(N, features)`.
pub fn encode_panels(
    cfg: &OfficialSclConfig,
    p: &Params,
    panels: &Tensor,
    bn: BnMode,
) -> Result<Tensor> {
    let stack = |p: &Params, x: &Tensor| -> Result<Tensor> {
        let mut h = channels_last(x);
        for i in 0..cfg.channels.len() {
            h = conv_block(p, i, &h, bn)?;
        }
        Ok(h)
    };
    let h = chunked_by_sample(
        p,
        &cfg.param_specs(),
        "visual.conv.0.weight",
        4,
        panels,
        stack,
    )?;
    panel_attributes(cfg, p, &h)
}

/// Conv block `i`: 3×3 stride-2 convolution, BatchNorm, ReLU (`visual.conv.{i}`, `visual.bn.{i}`).
///
/// # Shapes
/// `(N, C_in, H, W)` → `(N, C_out, ⌈H/2⌉, ⌈W/2⌉)`, channels-last; plain (not K-batched) weights.
pub fn conv_block(p: &Params, i: usize, h: &Tensor, bn: BnMode) -> Result<Tensor> {
    // The official model reads raw 0–255 pixels: the scale is folded into the first kernel.
    let input_scale = if i == 0 { 255.0 } else { 1.0 };
    if i == 0 && bn == BnMode::Train {
        // In a training step's forward (inside `optim::deferring`): one hand-written kernel.
        if let Some(y) = super::fused::first_block_train(p, h, input_scale)? {
            return Ok(y);
        }
    }
    // In place: neither the convolution's nor BatchNorm's backward needs its output.
    Ok(conv_s2_bn(
        p,
        &format!("visual.conv.{i}"),
        Some(&format!("visual.bn.{i}")),
        h,
        bn,
        input_scale,
    )?
    .relu_())
}

/// The scattering of the conv features into attribute groups: the per-channel spatial linear
/// map, the groups, the shared attribute MLP and its FCResBlock.
///
/// # Shapes
/// `(N, C, s, s)` (the conv stack's output) → `(N, features)`.
pub fn panel_attributes(cfg: &OfficialSclConfig, p: &Params, h: &Tensor) -> Result<Tensor> {
    let (n, c) = (h.size()[0], h.size()[1]);
    let per_channel = linear(p, "visual.spatial", &h.flatten(2, -1))?; // (N, C, features)
    let g = cfg.group_out();
    // Group k sees all channels × positions [g·k, g·k + g), flattened channel-major.
    let groups = per_channel
        .reshape([n, c, cfg.groups, g])
        .permute([0, 2, 1, 3])
        .reshape([n, cfg.groups, c * g]);
    let h = linear_relu(p, "visual.attr_mlp.0", &groups)?;
    let h = linear(p, "visual.attr_mlp.1", &h)?;
    Ok(res_block(p, "visual.attr_res", &h)?.reshape([n, cfg.features]))
}

/// Logits `(B, 8)`; each of the 16 panels is encoded once.
///
/// # Shapes
/// - `x`: `(B, 16, S, S)` f32 in [0, 1], `S = cfg.image_size` (8 context panels, then 8
///   candidates); with K-batched weights `B = K·n`, problems `k·n..(k+1)·n` using sample k;
/// - panel embeddings: `(B, 16, features)` ([`encode_panels`] on `(16·B, 1, S, S)`);
/// - output: logits `(B, 8)`, one per candidate.
pub fn forward(cfg: &OfficialSclConfig, p: &Params, x: &Tensor, bn: BnMode) -> Result<Tensor> {
    let size = x.size();
    if size.len() != 4 || size[1] != 16 || size[2] != cfg.image_size || size[3] != cfg.image_size {
        return Err(Error::InputShape(format!(
            "official SCL expects (B, 16, {s}, {s}) panels, got {size:?}",
            s = cfg.image_size
        )));
    }
    let (b, s) = (size[0], size[2]);
    let emb =
        encode_panels(cfg, p, &x.reshape([b * 16, 1, s, s]), bn)?.reshape([b, 16, cfg.features]);
    relational_logits(cfg, p, &emb)
}

/// Every expert applied to every attribute's 9 values: `(B, 8, D, 9)` → `(B, 8, D, experts)`.
///
/// The experts run as ONE batched pass: their parameters are stacked on the leading axis that
/// K-batched weights already use (sample-major, then expert), and the rows are laid out to
/// match, so each of the MLP's layers is a single `bmm` instead of one per expert.
fn experts(cfg: &OfficialSclConfig, p: &Params, per_attribute: &Tensor) -> Result<Tensor> {
    let size = per_attribute.size();
    let (b, d, e) = (size[0], size[2], cfg.experts);
    let probe = p.get("rel.experts.0.mlp.0.weight")?;
    let k = if probe.dim() == 3 { probe.size()[0] } else { 1 };
    let fused =
        super::fused_experts::experts_train(p, e as usize, &cfg.expert_hidden, per_attribute)?;
    // The kernel took the MLPs: only the FCResBlocks' parameters are stacked then.
    let part = if fused.is_some() { "res." } else { "" };
    let stacked = stacked_experts(cfg, p, probe.dim() == 3, part)?;
    let h = match fused {
        Some(h) => h,
        None => {
            // Rows (K·experts·n·8·D, 9): each (sample, expert) block is one contiguous chunk.
            let rows = per_attribute
                .reshape([k, 1, b / k, 8, d, 9])
                .expand([k, e, b / k, 8, d, 9], false)
                .reshape([-1, 9]);
            expert_mlps(cfg, &stacked, rows)?
        }
    };
    let h = res_block(&stacked, "res", &h)?; // (K·experts·n·8·D, 1)
    Ok(h.reshape([k, e, b / k, 8, d])
        .permute([0, 2, 3, 4, 1])
        .reshape([b, 8, d, e]))
}

/// The experts' MLPs on their rows `(K·experts·n·8·D, 9)` → `(K·experts·n·8·D, 1)`, each layer
/// one `bmm` over the stacked parameters.
fn expert_mlps(cfg: &OfficialSclConfig, stacked: &Params, rows: Tensor) -> Result<Tensor> {
    let layers = cfg.expert_hidden.len() + 1;
    let mut h = rows;
    for j in 0..layers {
        let name = format!("mlp.{j}");
        h = if j + 1 < layers {
            linear_relu(stacked, &name, &h)?
        } else {
            linear(stacked, &name, &h)?
        };
    }
    Ok(h)
}

/// The experts' parameters `rel.experts.{i}.{name}` stacked as `{name}` with a leading axis of
/// size experts (plain) or K·experts (K-batched, sample-major); only those under `part` (`""`:
/// all, `"res."`: the FCResBlocks).
fn stacked_experts(
    cfg: &OfficialSclConfig,
    p: &Params,
    batched: bool,
    part: &str,
) -> Result<Params> {
    let mut out = Params::new();
    let prefix = "rel.experts.0.";
    let wanted = format!("{prefix}{part}");
    for spec in cfg
        .param_specs()
        .iter()
        .filter(|s| s.name.starts_with(&wanted))
    {
        let name = &spec.name[prefix.len()..];
        let per_expert = (0..cfg.experts)
            .map(|i| p.get(&format!("rel.experts.{i}.{name}")))
            .collect::<Result<Vec<_>>>()?;
        let t = match batched {
            false => Tensor::stack(&per_expert, 0),
            true => {
                let t = Tensor::stack(&per_expert, 1);
                let mut shape = vec![-1];
                shape.extend(&t.size()[2..]);
                t.reshape(shape.as_slice())
            }
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// Logits `(B, 8)` from panel embeddings `(B, 16, features)`.
///
/// # Shapes
/// - `emb`: `(B, 16, D)`, `D = features` (8 context, then 8 candidates);
/// - candidate sets: `(B, 8, 9, D)`, viewed per attribute as `(B, 8, D, 9)`;
/// - expert weights after the softmax: `(B, 8, D, experts)`, flattened to `(B, 8, D·experts)`
///   for the scorer;
/// - output: logits `(B, 8)`.
pub fn relational_logits(cfg: &OfficialSclConfig, p: &Params, emb: &Tensor) -> Result<Tensor> {
    score(p, &relation_latent(cfg, p, emb)?)
}

/// The relational module: FCResBlock per panel, the 8 candidate sets, every expert on every
/// attribute, softmax over the experts.
///
/// # Shapes
/// `(B, 16, D)` → `(B, 8, D·experts)`.
pub fn relation_latent(cfg: &OfficialSclConfig, p: &Params, emb: &Tensor) -> Result<Tensor> {
    let b = emb.size()[0];
    let emb = res_block(p, "rel.res", emb)?;
    let d = cfg.features;
    let context = emb.narrow(1, 0, 8).unsqueeze(1).expand([b, 8, 8, d], false);
    let sets = Tensor::cat(&[context, emb.narrow(1, 8, 8).unsqueeze(2)], 2); // (B, 8, 9, D)
    let per_attribute = sets.transpose(2, 3); // (B, 8, D, 9)
    let latent = experts(cfg, p, &per_attribute)?;
    let latent = latent.softmax(-1, at_least_f32(latent.kind())); // (B, 8, D, experts)
    Ok(latent.reshape([b, 8, -1]))
}

/// The scorer MLP: one logit per candidate.
///
/// # Shapes
/// `(B, 8, D·experts)` → `(B, 8)`.
pub fn score(p: &Params, latent: &Tensor) -> Result<Tensor> {
    let b = latent.size()[0];
    let h = linear_relu(p, "scorer.0", latent)?;
    Ok(linear(p, "scorer.1", &h)?.reshape([b, 8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The experts one by one, with libtorch's own LayerNorm: the reference for the batched pass.
    fn experts_one_by_one(cfg: &OfficialSclConfig, p: &Params, x: &Tensor) -> Tensor {
        let get = |n: String| p.get(&n).unwrap();
        let lin = |n: String, h: &Tensor| {
            h.linear(get(format!("{n}.weight")), Some(get(format!("{n}.bias"))))
        };
        let ln = |n: String, h: &Tensor| {
            h.layer_norm(
                [1],
                Some(get(format!("{n}.weight"))),
                Some(get(format!("{n}.bias"))),
                1e-5,
                true,
            )
        };
        let outs: Vec<Tensor> = (0..cfg.experts)
            .map(|e| {
                let mut h = x.shallow_clone();
                for j in 0..3 {
                    h = lin(format!("rel.experts.{e}.mlp.{j}"), &h);
                    if j < 2 {
                        h = h.relu();
                    }
                }
                let r = format!("rel.experts.{e}.res");
                let inner = ln(
                    format!("{r}.ln_out"),
                    &lin(format!("{r}.fc1"), &ln(format!("{r}.ln_in"), &h).relu()),
                )
                .relu();
                &h + lin(format!("{r}.fc2"), &inner)
            })
            .collect();
        Tensor::cat(&outs, -1)
    }

    #[test]
    fn batched_experts_equal_the_experts_one_by_one_plain_and_k_batched() {
        tch::manual_seed(0);
        let cfg = OfficialSclConfig::default();
        let specs = cfg.param_specs();
        let k = 2;
        // K different random parameter sets (non-trivial norm affines included).
        let samples: Vec<Params> = (0..k)
            .map(|_| {
                specs.iter().fold(Params::new(), |mut p, s| {
                    p.insert(
                        &s.name,
                        Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu)) * 0.5,
                    );
                    p
                })
            })
            .collect();
        let x = Tensor::randn([2 * k, 8, cfg.features, 9], (Kind::Float, Device::Cpu));
        let plain = experts(&cfg, &samples[0], &x).unwrap();
        let reference = experts_one_by_one(&cfg, &samples[0], &x);
        // Relative to the outputs' scale (tens here): GEMMs of another blocking or instruction
        // set round differently, a few float32 ulps.
        let close = |got: &Tensor, want: &Tensor| {
            let (diff, scale) = (
                (got - want).abs().max().double_value(&[]),
                want.abs().max().double_value(&[]),
            );
            assert!(
                diff <= 1e-6 * scale.max(1.0),
                "max |diff| {diff} at scale {scale}"
            );
        };
        close(&plain, &reference);
        let batched = specs.iter().fold(Params::new(), |mut p, s| {
            p.insert(
                &s.name,
                Tensor::stack(
                    &samples
                        .iter()
                        .map(|q| q.get(&s.name).unwrap().shallow_clone())
                        .collect::<Vec<_>>(),
                    0,
                ),
            );
            p
        });
        let together = experts(&cfg, &batched, &x).unwrap();
        for (i, q) in samples.iter().enumerate() {
            let chunk = x.narrow(0, 2 * i as i64, 2);
            close(
                &together.narrow(0, 2 * i as i64, 2),
                &experts_one_by_one(&cfg, q, &chunk),
            );
        }
    }
}
