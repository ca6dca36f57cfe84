//! Training binary weight masks on a frozen SCL (`../shared/specs/weight-masking.md` §1–§2).
//!
//! One logit per masked scalar, apart from the frozen weights (only logits get gradients and
//! Adam state), all held in one flat leaf ([`FlatLogits`]). Every step draws K Gumbel-sigmoid
//! samples with hard straight-through (τ = 1): the forward uses exact 0/1 masks, the backward the
//! sigmoid's slope. The batch is split into K contiguous chunks, chunk k seeing sample k, in ONE
//! forward pass: the layers take K-batched weights (linear layers and the relation experts as
//! `bmm`, per-sample norm affines, BatchNorm in eval mode folded into each chunk's convolution;
//! `model::layers` says why the convolutions run chunk by chunk on CPU).
//!
//! Loss = mean cross-entropy + α·Σ logits — the study's convention. Csordás et al. write
//! `β/B·Σ l`; with Adam (scale-invariant) the study's chunked backward and our batch mean give
//! the same updates for the same α, and `α = β/B` converts their values.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Mask;
use crate::data::dataset::BatchOptions;
use crate::data::loader::{EpochOrder, Loader, LoaderConfig};
use crate::data::AvrDataset;
use crate::display::{Figure, Table};
use crate::model::{BnMode, Params, SclModel};
use crate::plot::{line_plot, Line};
use crate::train::eval::{evaluate, EvalOptions};
use crate::train::trainer::{clip_grad_norm, zero_grads, AdamW};
use crate::{Error, Result};

/// Which tensors get a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskFilter {
    /// Every trainable tensor, biases and norm affines included (the study's choice).
    All,
    /// Only weight matrices and kernels (tensors with ≥ 2 axes): biases and norms stay whole.
    WeightsOnly,
}

/// Mask-training settings; defaults follow the study's SCL runs where they were sound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaskTrainConfig {
    /// L1 coefficient on the raw logits (default 2.1877616e-6 = 10^-5.66, the study's most used).
    pub alpha: f64,
    /// Gumbel-sigmoid temperature (default 1, never annealed).
    pub tau: f64,
    /// Mask samples per step, K (default 4); the batch must be divisible by K.
    pub samples: usize,
    /// Problems per step (default 32).
    pub batch_size: usize,
    /// Optimiser steps (default 500).
    pub steps: usize,
    /// Adam learning rate of the logits (default 1e-2).
    pub lr: f64,
    /// Initial logit for every scalar (default 2.5: P(keep) = 0.92 at the start).
    pub logit_init: f64,
    /// Clip the logits' gradient norm (default none, like the study).
    pub clip_grad_norm: Option<f64>,
    pub filter: MaskFilter,
    /// Evaluate the deterministic mask every N steps (default 100) and at the end.
    pub eval_every: usize,
    /// Problems per evaluation set (default 200; 0 = all).
    pub eval_problems: usize,
    /// Seed of the data order and of the mask samples (default 0).
    pub seed: u64,
    pub batch: BatchOptions,
}

impl Default for MaskTrainConfig {
    fn default() -> Self {
        MaskTrainConfig {
            alpha: 2.1877616e-6,
            tau: 1.0,
            samples: 4,
            batch_size: 32,
            steps: 500,
            lr: 1e-2,
            logit_init: 2.5,
            clip_grad_norm: None,
            filter: MaskFilter::All,
            eval_every: 100,
            eval_problems: 200,
            seed: 0,
            batch: BatchOptions::default(),
        }
    }
}

/// Fresh logits (all `init`) for the tensors of `model` that `filter` selects, skipping `fixed`.
pub fn init_logits(
    model: &SclModel,
    filter: MaskFilter,
    init: f64,
    fixed: Option<&Mask>,
) -> Params {
    let mut out = Params::new();
    for spec in model.param_specs().into_iter().filter(|s| s.trainable) {
        let selected = filter == MaskFilter::All || spec.shape.len() >= 2;
        if selected && !fixed.is_some_and(|m| m.logits.contains(&spec.name)) {
            let device = model
                .params
                .get(&spec.name)
                .map(|t| t.device())
                .unwrap_or(tch::Device::Cpu);
            out.insert(
                &spec.name,
                Tensor::full(spec.shape.as_slice(), init, (Kind::Float, device)),
            );
        }
    }
    out
}

/// Hard straight-through Gumbel-sigmoid: forward exact 0/1 with P(1) = σ(l/τ)… per sample,
/// backward `∂m/∂l = s(1−s)/τ`. Returns `(K, *l.shape)`.
pub fn sample_mask(logits: &Tensor, k: i64, tau: f64) -> Tensor {
    let mut shape = vec![k];
    shape.extend(logits.size());
    // Logistic noise from one uniform clamped to [1e-6, 1 − 1e-6]: log u − log(1 − u), which is
    // exactly `logit(u, eps)` — one fused pass instead of four.
    let noise = Tensor::rand(shape.as_slice(), (Kind::Float, logits.device())).logit(Some(1e-6));
    let z = logits.unsqueeze(0) + noise;
    let soft = if tau == 1.0 {
        z.sigmoid()
    } else {
        (&z / tau).sigmoid()
    };
    let hard = z.gt(0.0).to_kind(Kind::Float); // σ(z/τ) > 1/2 ⇔ z > 0
    (hard - soft.detach()) + soft
}

/// Every logit of a mask in one flat leaf tensor, with each masked tensor's name and shape.
///
/// One leaf instead of one per tensor (~80 in SCL) makes the per-step bookkeeping — Gumbel
/// sampling, the regulariser, zeroing gradients and the Adam update — one pass each instead of
/// ~80 small ones; the model still sees one masked tensor per parameter name.
#[derive(Debug)]
pub struct FlatLogits {
    /// The trained leaf, `(T,)`: the tensors' logits flattened and concatenated in order.
    pub flat: Tensor,
    layout: Vec<(String, Vec<i64>)>,
}

impl FlatLogits {
    /// A trainable flat copy of `logits`.
    pub fn new(logits: &Params) -> Self {
        let pieces: Vec<Tensor> = logits
            .iter()
            .map(|(_, t)| t.detach().reshape([-1]))
            .collect();
        let flat = match pieces.is_empty() {
            true => Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)),
            false => Tensor::cat(&pieces, 0),
        };
        let layout = logits
            .iter()
            .map(|(n, t)| (n.to_string(), t.size()))
            .collect();
        FlatLogits {
            flat: flat.set_requires_grad(true),
            layout,
        }
    }

    /// Number of logits, T.
    pub fn numel(&self) -> i64 {
        self.flat.size()[0]
    }

    fn sizes(&self) -> Vec<i64> {
        self.layout
            .iter()
            .map(|(_, shape)| shape.iter().product())
            .collect()
    }

    /// Detached per-tensor copies of the current logits (what a [`Mask`] holds).
    pub fn to_params(&self) -> Params {
        let pieces = self.flat.detach().split_with_sizes(self.sizes(), 0);
        let mut out = Params::new();
        for ((name, shape), piece) in self.layout.iter().zip(pieces) {
            out.insert(name, piece.reshape(shape.as_slice()).copy());
        }
        out
    }

    /// `Σ l` over every logit: the regulariser before its α (linear in the raw logits, as the
    /// study and Csordás et al. use it — not σ(l)).
    pub fn sum(&self) -> Tensor {
        self.flat.sum(Kind::Float)
    }

    /// One step's K-batched parameters for a model described by `specs`: masked tensors
    /// `w · m_k` (one Gumbel-sigmoid draw of shape `(K, T)` for all of them), other trainable
    /// tensors expanded to K (no copy), buffers as they are. Also returns the 0/1 draw.
    pub fn sample(
        &self,
        specs: &[crate::model::ParamSpec],
        base: &Params,
        k: i64,
        tau: f64,
    ) -> Result<(Params, Tensor)> {
        let weights = self
            .layout
            .iter()
            .map(|(name, _)| base.get(name).map(|w| w.detach().reshape([-1])))
            .collect::<Result<Vec<_>>>()?;
        let mask = sample_mask(&self.flat, k, tau); // (K, T)
        let masked = match weights.is_empty() {
            true => Vec::new(),
            false => {
                (&mask * Tensor::cat(&weights, 0).unsqueeze(0)).split_with_sizes(self.sizes(), 1)
            }
        };
        let mut by_name: std::collections::HashMap<&str, Tensor> = self
            .layout
            .iter()
            .zip(masked)
            .map(|((name, shape), m)| {
                let mut batched = vec![k];
                batched.extend(shape);
                (name.as_str(), m.reshape(batched.as_slice()))
            })
            .collect();
        let mut out = Params::new();
        for spec in specs {
            let w = base.get(&spec.name)?;
            let t = match by_name.remove(spec.name.as_str()) {
                Some(masked) => masked,
                None if spec.trainable => {
                    let mut shape = vec![k];
                    shape.extend(w.size());
                    w.unsqueeze(0).expand(shape.as_slice(), false)
                }
                None => w.shallow_clone(),
            };
            out.insert(&spec.name, t);
        }
        Ok((out, mask.detach()))
    }

    /// Parameters with a single mask sample applied, without the sample axis (the study's way:
    /// one draw per forward pass).
    pub fn sample_one(
        &self,
        specs: &[crate::model::ParamSpec],
        base: &Params,
        tau: f64,
    ) -> Result<Params> {
        let (batched, _) = self.sample(specs, base, 1, tau)?;
        let mut out = Params::new();
        for spec in specs {
            let t = batched.get(&spec.name)?;
            out.insert(
                &spec.name,
                if spec.trainable {
                    t.squeeze_dim(0)
                } else {
                    t.shallow_clone()
                },
            );
        }
        Ok(out)
    }
}

/// One row of the mask-training log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaskMetricRow {
    pub step: usize,
    pub loss: f64,
    pub cross_entropy: f64,
    /// Kept fraction of this step's samples.
    pub sample_kept: f64,
    pub train_accuracy: f64,
    /// Deterministic-mask (`l > 0`) accuracies, at evaluation steps.
    pub task_accuracy: Option<f64>,
    pub control_accuracy: Option<f64>,
    pub inverted_task_accuracy: Option<f64>,
    pub inverted_control_accuracy: Option<f64>,
    pub kept_fraction: Option<f64>,
}

/// The JSON sidecar of a saved mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaskSidecar {
    pub name: String,
    pub config: MaskTrainConfig,
    /// The checkpoint the mask was trained on, and a hash of its weights.
    pub base_checkpoint: String,
    pub base_hash: String,
    /// Measured validation accuracy of the base checkpoint, when known.
    pub base_accuracy: Option<f64>,
    pub task_dataset: String,
    pub control_dataset: Option<String>,
    pub steps_done: usize,
    pub final_task_accuracy: Option<f64>,
    pub final_control_accuracy: Option<f64>,
    pub final_inverted_task_accuracy: Option<f64>,
    pub final_inverted_control_accuracy: Option<f64>,
    pub kept_fraction: f64,
    pub code_version: String,
}

/// A finished mask-training run.
#[derive(Debug, Clone)]
pub struct MaskRun {
    pub mask: Mask,
    pub metrics: Vec<MaskMetricRow>,
    pub config: MaskTrainConfig,
}

impl MaskRun {
    /// The log as a table (one row per step; accuracies only at evaluation steps).
    pub fn metrics_table(&self) -> Result<Table> {
        let col =
            |f: fn(&MaskMetricRow) -> Option<f64>| self.metrics.iter().map(f).collect::<Vec<_>>();
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "step".into(),
                self.metrics
                    .iter()
                    .map(|r| r.step as u64)
                    .collect::<Vec<_>>(),
            ),
            Column::new("loss".into(), col(|r| Some(r.loss))),
            Column::new("cross_entropy".into(), col(|r| Some(r.cross_entropy))),
            Column::new("sample_kept".into(), col(|r| Some(r.sample_kept))),
            Column::new("train_accuracy".into(), col(|r| Some(r.train_accuracy))),
            Column::new("task_accuracy".into(), col(|r| r.task_accuracy)),
            Column::new("control_accuracy".into(), col(|r| r.control_accuracy)),
            Column::new(
                "inverted_task_accuracy".into(),
                col(|r| r.inverted_task_accuracy),
            ),
            Column::new(
                "inverted_control_accuracy".into(),
                col(|r| r.inverted_control_accuracy),
            ),
            Column::new("kept_fraction".into(), col(|r| r.kept_fraction)),
        ])?;
        Ok(Table::new(df).with_caption(format!("mask training: {}", self.mask.name)))
    }

    /// Task, control and inverted-mask accuracy (deterministic mask) over training, and the
    /// kept fraction.
    pub fn curves(&self) -> Result<Figure> {
        let evals: Vec<&MaskMetricRow> = self
            .metrics
            .iter()
            .filter(|r| r.task_accuracy.is_some())
            .collect();
        let xs: Vec<f64> = evals.iter().map(|r| r.step as f64).collect();
        let series = |name: &str, f: fn(&MaskMetricRow) -> Option<f64>| {
            let pts: Vec<(f64, f64)> = evals
                .iter()
                .zip(&xs)
                .filter_map(|(r, &x)| f(r).map(|y| (x, 100.0 * y)))
                .collect();
            Line::new(
                name,
                &pts.iter().map(|p| p.0).collect::<Vec<_>>(),
                &pts.iter().map(|p| p.1).collect::<Vec<_>>(),
            )
        };
        line_plot(
            &format!("mask training — {}", self.mask.name),
            "step",
            "% (accuracy with l > 0; kept weights)",
            &[
                series("task", |r| r.task_accuracy),
                series("control (originals)", |r| r.control_accuracy),
                series("inverted, task", |r| r.inverted_task_accuracy),
                series("inverted, control", |r| r.inverted_control_accuracy),
                series("kept weights", |r| r.kept_fraction),
            ],
        )
    }

    pub fn evcxr_display(&self) {
        match self.curves() {
            Ok(f) => f.evcxr_display(),
            Err(e) => println!("{e}"),
        }
    }

    fn last(&self, f: fn(&MaskMetricRow) -> Option<f64>) -> Option<f64> {
        self.metrics.iter().rev().find_map(f)
    }

    /// Saves `<path>` (`.safetensors` logits) and its `.json` sidecar, both atomically.
    pub fn save(
        &self,
        path: &Path,
        base_checkpoint: &str,
        base: &SclModel,
        base_accuracy: Option<f64>,
        task: &str,
        control: Option<&str>,
    ) -> Result<PathBuf> {
        crate::checkpoint::write_safetensors_atomic(path, &self.mask.logits)?;
        let (kept, total) = self.mask.kept();
        let sidecar = MaskSidecar {
            name: self.mask.name.clone(),
            config: self.config.clone(),
            base_checkpoint: base_checkpoint.to_string(),
            base_hash: params_hash(&base.params),
            base_accuracy,
            task_dataset: task.to_string(),
            control_dataset: control.map(str::to_string),
            steps_done: self.metrics.len(),
            final_task_accuracy: self.last(|r| r.task_accuracy),
            final_control_accuracy: self.last(|r| r.control_accuracy),
            final_inverted_task_accuracy: self.last(|r| r.inverted_task_accuracy),
            final_inverted_control_accuracy: self.last(|r| r.inverted_control_accuracy),
            kept_fraction: kept as f64 / total.max(1) as f64,
            code_version: env!("CARGO_PKG_VERSION").into(),
        };
        let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| Error::Config(e.to_string()))?;
        crate::checkpoint::write_atomic(&path.with_extension("json"), &json)?;
        Ok(path.to_path_buf())
    }
}

/// FNV-1a over every tensor's name and bytes: identifies the frozen weights a mask belongs to.
pub fn params_hash(params: &Params) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        bytes
            .iter()
            .for_each(|&b| h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    };
    for (name, t) in params.iter() {
        feed(name.as_bytes());
        let t = t
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let values: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap_or_default();
        values.iter().for_each(|v| feed(&v.to_le_bytes()));
    }
    format!("{h:016x}")
}

fn first_n(data: &AvrDataset, n: usize) -> AvrDataset {
    let mut d = data.clone();
    if n > 0 && d.files.len() > n {
        // A fixed, seed-independent spread over the set (files are sorted by path).
        let step = d.files.len() as f64 / n as f64;
        d.files = (0..n)
            .map(|i| d.files[(i as f64 * step) as usize].clone())
            .collect();
    }
    d
}

/// Trains a mask on `task` (e.g. the `squares` dataset), evaluating the deterministic mask and
/// its inverse on `task_val` and, when given, `control` (the `originals`).
pub fn train_mask(
    model: &SclModel,
    name: &str,
    task: &AvrDataset,
    task_val: &AvrDataset,
    control: Option<&AvrDataset>,
    cfg: &MaskTrainConfig,
) -> Result<MaskRun> {
    train_mask_with_fixed(model, name, task, task_val, control, cfg, None)
}

/// [`train_mask`] with some tensors held by a fixed ("temporary") mask that is not trained.
pub fn train_mask_with_fixed(
    model: &SclModel,
    name: &str,
    task: &AvrDataset,
    task_val: &AvrDataset,
    control: Option<&AvrDataset>,
    cfg: &MaskTrainConfig,
    fixed: Option<&Mask>,
) -> Result<MaskRun> {
    let k = cfg.samples.max(1);
    if cfg.batch_size % k != 0 {
        return Err(Error::Config(format!(
            "mask batch {} must be divisible by the {k} mask samples",
            cfg.batch_size
        )));
    }
    if task.is_empty() || task_val.is_empty() {
        return Err(Error::Config(format!("mask '{name}': empty task dataset")));
    }
    tch::manual_seed(cfg.seed as i64);
    let device = model
        .params
        .iter()
        .next()
        .map(|(_, t)| t.device())
        .unwrap_or(tch::Device::Cpu);
    let base = match fixed {
        Some(m) => m.apply(&model.params, false)?,
        None => model.params.clone(),
    };
    let logits = FlatLogits::new(&init_logits(model, cfg.filter, cfg.logit_init, fixed));
    let leaves = [logits.flat.shallow_clone()];
    let specs = model.param_specs();
    let mut opt = AdamW::new(&leaves);
    let mut order = EpochOrder::new(cfg.seed, task.len(), true);
    let loader = Loader::from_order(
        task,
        &mut order,
        cfg.steps,
        &LoaderConfig {
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            options: cfg.batch,
            ..Default::default()
        },
        device,
    );
    let eval_opts = EvalOptions {
        batch_size: 32,
        batch: cfg.batch,
        invert_mask: false,
        device,
    };
    let (task_val, control) = (
        first_n(task_val, cfg.eval_problems),
        control.map(|c| first_n(c, cfg.eval_problems)),
    );
    let mut run = MaskRun {
        mask: Mask::new(name, logits.to_params(), Some(cfg.alpha)),
        metrics: Vec::new(),
        config: cfg.clone(),
    };
    for (step, batch) in (1..=cfg.steps).zip(loader) {
        let batch = batch?;
        let b = batch.targets.size()[0];
        // Drop a ragged tail so the K chunks are equal.
        let usable = b - b % k as i64;
        if usable == 0 {
            return Err(Error::Config(format!("mask '{name}': a batch of {b} problems cannot feed {k} mask samples (the task set has {} problems)", task.len())));
        }
        let (x, y) = (
            batch.images.narrow(0, 0, usable),
            batch.targets.narrow(0, 0, usable),
        );
        zero_grads(&leaves);
        let (params, draw) = logits.sample(&specs, &base, k as i64, cfg.tau)?;
        let out = model.logits_with(&params, &x, BnMode::Eval)?;
        let ce = out.cross_entropy_for_logits(&y);
        let reg = logits.sum() * cfg.alpha;
        let loss = &ce + &reg;
        let (loss_v, ce_v) = (loss.double_value(&[]), ce.double_value(&[]));
        if !loss_v.is_finite() {
            return Err(Error::Config(format!(
                "mask '{name}': loss became {loss_v} at step {step}"
            )));
        }
        loss.backward();
        if let Some(c) = cfg.clip_grad_norm {
            clip_grad_norm(&leaves, c);
        }
        opt.step_with(&leaves, cfg.lr, 0.0, (0.9, 0.999), 1e-8);
        let (train_accuracy, sample_kept) = tch::no_grad(|| {
            let acc = out
                .argmax(-1, false)
                .eq_tensor(&y)
                .to_kind(Kind::Float)
                .mean(Kind::Float)
                .double_value(&[]);
            (acc, draw.mean(Kind::Float).double_value(&[]))
        });
        let mut row = MaskMetricRow {
            step,
            loss: loss_v,
            cross_entropy: ce_v,
            sample_kept,
            train_accuracy,
            task_accuracy: None,
            control_accuracy: None,
            inverted_task_accuracy: None,
            inverted_control_accuracy: None,
            kept_fraction: None,
        };
        if step % cfg.eval_every.max(1) == 0 || step == cfg.steps {
            let mask = Mask::new(name, logits.to_params(), Some(cfg.alpha));
            let acc = |data: &AvrDataset, invert: bool| {
                evaluate(
                    model,
                    Some(&mask),
                    data,
                    &EvalOptions {
                        invert_mask: invert,
                        ..eval_opts
                    },
                )
                .map(|r| r.accuracy)
            };
            row.task_accuracy = Some(acc(&task_val, false)?);
            row.inverted_task_accuracy = Some(acc(&task_val, true)?);
            if let Some(c) = &control {
                row.control_accuracy = Some(acc(c, false)?);
                row.inverted_control_accuracy = Some(acc(c, true)?);
            }
            let (kept, total) = mask.kept();
            row.kept_fraction = Some(kept as f64 / total.max(1) as f64);
            eprintln!(
                "[mask {name}] step {step:>5} loss {loss_v:.4} task {:.3} control {} inverted task {:.3} kept {:.2} %",
                row.task_accuracy.unwrap_or(0.0),
                row.control_accuracy.map(|v| format!("{v:.3}")).unwrap_or("-".into()),
                row.inverted_task_accuracy.unwrap_or(0.0),
                100.0 * row.kept_fraction.unwrap_or(0.0)
            );
        }
        run.metrics.push(row);
    }
    run.mask = Mask::new(name, logits.to_params(), Some(cfg.alpha));
    Ok(run)
}

/// How the K mask samples of a step are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleBatching {
    /// One pass with K-batched weights (bmm; convolutions per chunk): the engine's way.
    Batched,
    /// K passes of B/K problems, one mask sample each (the study's way), for comparison.
    Separate,
}

/// `steps` mask-training steps (frozen weights, K samples, eval BN) on random panels, timed one
/// by one after two warm-up steps — `avr bench mask`.
pub fn bench_mask_steps(
    model: &SclModel,
    batch: usize,
    samples: usize,
    steps: usize,
    batching: SampleBatching,
) -> Result<crate::bench::StepTimes> {
    let device = model
        .params
        .iter()
        .next()
        .map(|(_, t)| t.device())
        .unwrap_or(tch::Device::Cpu);
    let s = model.image_size();
    let logits = FlatLogits::new(&init_logits(model, MaskFilter::All, 2.5, None));
    let leaves = [logits.flat.shallow_clone()];
    let specs = model.param_specs();
    let mut opt = AdamW::new(&leaves);
    let x = Tensor::rand([batch as i64, 16, s, s], (Kind::Float, device));
    let y = Tensor::randint(8, [batch as i64], (Kind::Int64, device));
    let k = samples.max(1) as i64;
    let one_step = || -> Result<()> {
        zero_grads(&leaves);
        let reg = logits.sum() * 1e-6;
        let ce = match batching {
            SampleBatching::Batched => {
                let (params, _) = logits.sample(&specs, &model.params, k, 1.0)?;
                model
                    .logits_with(&params, &x, BnMode::Eval)?
                    .cross_entropy_for_logits(&y)
            }
            SampleBatching::Separate => {
                let chunk = batch as i64 / k;
                let mut total = Tensor::zeros([], (Kind::Float, device));
                for c in 0..k {
                    let params = logits.sample_one(&specs, &model.params, 1.0)?;
                    let out =
                        model.logits_with(&params, &x.narrow(0, c * chunk, chunk), BnMode::Eval)?;
                    total +=
                        out.cross_entropy_for_logits(&y.narrow(0, c * chunk, chunk)) / k as f64;
                }
                total
            }
        };
        (ce + reg).backward();
        opt.step_with(&leaves, 1e-2, 0.0, (0.9, 0.999), 1e-8);
        Ok(())
    };
    crate::bench::StepTimes::measure(batch, 2, steps, one_step)
}

/// The α sweep: one mask per α, and the selection rule made explicit.
#[derive(Debug, Clone)]
pub struct AlphaSweep {
    pub runs: Vec<MaskRun>,
    /// Allowed drop of task accuracy from the smallest-α run (default 0.05).
    pub tolerance: f64,
    /// Index of the chosen run: the largest α whose final task accuracy is within `tolerance`
    /// of the smallest-α run's (the sparsest mask that still does the task).
    pub chosen: usize,
}

impl AlphaSweep {
    pub fn chosen_alpha(&self) -> f64 {
        self.runs[self.chosen].config.alpha
    }

    /// α, kept %, task / control / inverted accuracies of every run, and which was chosen.
    pub fn table(&self) -> Result<Table> {
        let last = |r: &MaskRun, f: fn(&MaskMetricRow) -> Option<f64>| {
            r.metrics.iter().rev().find_map(f).map(|v| 100.0 * v)
        };
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "alpha".into(),
                self.runs
                    .iter()
                    .map(|r| format!("{:e}", r.config.alpha))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "kept_%".into(),
                self.runs
                    .iter()
                    .map(|r| last(r, |m| m.kept_fraction))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "task_acc_%".into(),
                self.runs
                    .iter()
                    .map(|r| last(r, |m| m.task_accuracy))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "control_acc_%".into(),
                self.runs
                    .iter()
                    .map(|r| last(r, |m| m.control_accuracy))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "inverted_task_acc_%".into(),
                self.runs
                    .iter()
                    .map(|r| last(r, |m| m.inverted_task_accuracy))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "chosen".into(),
                (0..self.runs.len())
                    .map(|i| i == self.chosen)
                    .collect::<Vec<_>>(),
            ),
        ])?;
        Ok(Table::new(df).with_caption(format!(
            "α sweep: the largest α within {:.0} points of the smallest α's task accuracy",
            100.0 * self.tolerance
        )))
    }

    pub fn evcxr_display(&self) {
        match self.table().and_then(|t| t.to_html()) {
            Ok(html) => println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT"),
            Err(e) => println!("{e}"),
        }
    }
}

/// Index of the largest α whose task accuracy is within `tolerance` of the smallest α's.
pub fn select_alpha(alphas_and_accuracies: &[(f64, f64)], tolerance: f64) -> usize {
    let Some(reference) = alphas_and_accuracies
        .iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|r| r.1)
    else {
        return 0;
    };
    (0..alphas_and_accuracies.len())
        .filter(|&i| alphas_and_accuracies[i].1 >= reference - tolerance)
        .max_by(|&a, &b| {
            alphas_and_accuracies[a]
                .0
                .total_cmp(&alphas_and_accuracies[b].0)
        })
        .unwrap_or(0)
}

/// Trains one mask per α (everything else from `cfg`) and applies [`select_alpha`].
pub fn alpha_sweep(
    model: &SclModel,
    name: &str,
    task: &AvrDataset,
    task_val: &AvrDataset,
    control: Option<&AvrDataset>,
    cfg: &MaskTrainConfig,
    alphas: &[f64],
    tolerance: f64,
) -> Result<AlphaSweep> {
    let runs = alphas
        .iter()
        .map(|&alpha| {
            train_mask(
                model,
                &format!("{name} α={alpha:e}"),
                task,
                task_val,
                control,
                &MaskTrainConfig {
                    alpha,
                    ..cfg.clone()
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let scores: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                r.config.alpha,
                r.metrics
                    .iter()
                    .rev()
                    .find_map(|m| m.task_accuracy)
                    .unwrap_or(0.0),
            )
        })
        .collect();
    Ok(AlphaSweep {
        chosen: select_alpha(&scores, tolerance),
        runs,
        tolerance,
    })
}
