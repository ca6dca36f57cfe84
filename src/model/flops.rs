//! The work of the official SCL per problem, counted from its layer shapes, and a training
//! step's time stage by stage: the roofline of `make bench` (BENCHMARKS.md) with
//! [`crate::bench::gemm_peak`] as its peak.

use serde::Serialize;
use tch::Tensor;

use super::OfficialSclConfig;
use crate::bench::StepTimes;
use crate::Result;

/// One stage of the official SCL and its forward work for one problem.
#[derive(Debug, Clone, Serialize)]
pub struct StageFlops {
    /// The stage (parameter-name prefix or group).
    pub stage: String,
    /// Forward floating-point operations per problem (2 per multiply-add of the convolutions
    /// and linear layers; norms, activations and softmax are not counted).
    pub forward: f64,
    /// Whether the stage's input is the data (no input gradient in the backward pass).
    pub reads_data: bool,
}

impl StageFlops {
    /// Forward + backward work per problem: the backward computes the weight gradient (as much
    /// work as the forward) and the input gradient (as much again) except where the input is
    /// the data. Mask training needs both too: its gradients reach the logits through `w ⊙ m`.
    pub fn step(&self) -> f64 {
        self.forward * if self.reads_data { 2.0 } else { 3.0 }
    }
}

/// The official SCL's stages with their work per problem (16 panel encodes, 8 candidate sets).
pub fn official_stage_flops(cfg: &OfficialSclConfig) -> Vec<StageFlops> {
    let panels = 16.0;
    let mut stages = Vec::new();
    let (mut c_in, mut side) = (1.0, cfg.image_size as f64);
    for (i, &c) in cfg.channels.iter().enumerate() {
        side = ((side as i64 + 1) / 2) as f64;
        stages.push(StageFlops {
            stage: format!("visual.conv.{i} (+ bn, relu)"),
            forward: panels * 2.0 * c as f64 * c_in * 9.0 * side * side,
            reads_data: i == 0,
        });
        c_in = c as f64;
    }
    let (f, groups, g) = (
        cfg.features as f64,
        cfg.groups as f64,
        (cfg.features / cfg.groups) as f64,
    );
    let attr_hidden = cfg.attr_hidden as f64;
    let res = |d: f64| 2.0 * 2.0 * d * d;
    let per_panel = 2.0 * c_in * side * side * f
        + groups * (2.0 * c_in * g * attr_hidden + 2.0 * attr_hidden * g + res(g));
    stages.push(StageFlops {
        stage: "visual.spatial + attr_mlp + attr_res".into(),
        forward: panels * per_panel,
        reads_data: false,
    });
    let mut expert = 0.0;
    let mut d = 9.0;
    for &h in cfg.expert_hidden.iter().chain(&[1]) {
        expert += 2.0 * d * h as f64;
        d = h as f64;
    }
    expert += res(1.0);
    stages.push(StageFlops {
        stage: "rel.res + experts (+ softmax)".into(),
        forward: panels * res(f) + 8.0 * f * cfg.experts as f64 * expert,
        reads_data: false,
    });
    let hidden = cfg.scorer_hidden as f64;
    stages.push(StageFlops {
        stage: "scorer".into(),
        forward: 8.0 * 2.0 * (f * cfg.experts as f64 * hidden + hidden),
        reads_data: false,
    });
    stages
}

/// One stage's measured forward + backward time within a training step.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    /// The stage, as in [`official_stage_flops`].
    pub stage: String,
    /// Median forward + backward seconds for the whole batch.
    pub seconds: f64,
    /// Forward + backward work for the whole batch ([`StageFlops::step`]).
    pub flops: f64,
}

/// Where an official SCL training step's time goes: each stage run alone on inputs of its
/// shape in the step (batch `batch`, train-mode BatchNorm, `precision`), forward then backward
/// from a random output gradient, `reps` timed runs after two warm-ups (median); last, the
/// optimiser's update with `adam`.
pub fn official_stage_times(
    batch: i64,
    precision: super::Precision,
    reps: usize,
    adam: &crate::optim::AdamConfig,
) -> Result<Vec<StageTime>> {
    use super::scl_official::{conv_block, panel_attributes, relation_latent, score};
    use super::{in_precision, layers::channels_last, BnMode, SclModel, SclVariant};
    let cfg = OfficialSclConfig::default();
    let model = SclModel::init(SclVariant::Official(cfg.clone()), 0, tch::Device::Cpu);
    let p = &model.params;
    let leaves = model.trainable_leaves()?;
    let f32s = (tch::Kind::Float, tch::Device::Cpu);
    let timed = |input: Tensor, stage: &dyn Fn(&Tensor) -> Result<Tensor>| -> Result<f64> {
        // A fixed random output gradient, drawn once (untimed warm-up): the backward pass is
        // `(out · g).sum()`'s, one extra elementwise pass each way.
        let mut grad: Option<Tensor> = None;
        let times = StepTimes::measure(1, 2, reps, || {
            // As in a training step: hand-written kernels defer their backward.
            let (out, owed) = crate::optim::deferring(|| in_precision(precision, || stage(&input)));
            let out = out?;
            // In the memory format of the output, as the next layer's backward would give it.
            let g = grad.get_or_insert_with(|| out.randn_like().to_kind(out.kind()));
            owed.backward_from(&(out * &*g).sum(tch::Kind::Float))
        })?;
        Ok(times.median())
    };
    let needs_grad = |t: Tensor| t.set_requires_grad(true);
    let (n, mut side) = (batch * 16, cfg.image_size);
    let mut seconds = Vec::new();
    let mut c_in = 1;
    for (i, &c) in cfg.channels.iter().enumerate() {
        let x = channels_last(&Tensor::rand([n, c_in, side, side], f32s));
        let x = if i == 0 { x } else { needs_grad(x) };
        seconds.push(timed(x, &|h| conv_block(p, i, h, BnMode::Train))?);
        (c_in, side) = (c, (side + 1) / 2);
    }
    let conv_out = needs_grad(channels_last(&Tensor::rand([n, c_in, side, side], f32s)));
    seconds.push(timed(conv_out, &|h| panel_attributes(&cfg, p, h))?);
    let emb = needs_grad(Tensor::randn([batch, 16, cfg.features], f32s));
    seconds.push(timed(emb, &|e| relation_latent(&cfg, p, e))?);
    let latent = needs_grad(Tensor::rand([batch, 8, cfg.features * cfg.experts], f32s));
    seconds.push(timed(latent, &|l| score(p, l))?);
    let mut stages: Vec<StageTime> = official_stage_flops(&cfg)
        .into_iter()
        .zip(seconds)
        .map(|(f, seconds)| StageTime {
            flops: f.step() * batch as f64,
            stage: f.stage,
            seconds,
        })
        .collect();
    stages.push(optimiser_update_time(&leaves, adam, reps)?);
    Ok(stages)
}

/// The step's AdamW update of the leaves that got gradients above (elementwise work, not
/// counted as FLOPs): `reps` timed updates after two warm-ups. `AVR_FLAT_ADAM=0` times the
/// update one tensor at a time.
fn optimiser_update_time(
    leaves: &[Tensor],
    adam: &crate::optim::AdamConfig,
    reps: usize,
) -> Result<StageTime> {
    let mut opt = crate::optim::AdamW::new(leaves);
    let times = StepTimes::measure(1, 2, reps, || {
        opt.update(leaves, adam);
        Ok(())
    })?;
    Ok(StageTime {
        stage: "AdamW update".into(),
        seconds: times.median(),
        flops: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_flops_follow_the_layer_shapes() {
        let cfg = OfficialSclConfig::default();
        let stages = official_stage_flops(&cfg);
        // conv 0 at 80 px: 16 panels × 2 · 16 out · 1 in · 9 taps · 40² positions.
        assert_eq!(stages[0].forward, 16.0 * 2.0 * 16.0 * 9.0 * 1600.0);
        assert!(stages[0].reads_data && !stages[1].reads_data);
        // conv 3: 32 → 32 channels at 5 × 5.
        assert_eq!(stages[3].forward, 16.0 * 2.0 * 32.0 * 32.0 * 9.0 * 25.0);
        // scorer: 8 candidates × 2 · (400 · 128 + 128 · 1).
        assert_eq!(stages[6].forward, 8.0 * 2.0 * (400.0 * 128.0 + 128.0));
        // experts: 8 sets × 80 attributes × 5 experts × 2 · (9·64 + 64·32 + 32·1 + FCResBlock(1)).
        let experts = 8.0 * 80.0 * 5.0 * 2.0 * (576.0 + 2048.0 + 32.0 + 2.0);
        assert_eq!(stages[5].forward, 16.0 * 4.0 * 6400.0 + experts);
        let total: f64 = stages.iter().map(StageFlops::step).sum();
        // ≈ 0.263 GFLOP per problem per training step (forward ≈ 0.090; conv 1 alone 0.089).
        assert!((0.26e9..0.27e9).contains(&total), "{total}");
    }
}
