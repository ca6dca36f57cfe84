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
use crate::checkpoint::{Checkpoint, RecordedAccuracy};
use crate::data::dataset::Batch;
use crate::data::loader::{EpochOrder, Loader, LoaderConfig};
use crate::data::{AvrDataset, Shape, Split};
use crate::display::Table;
use crate::model::{BnMode, Params, SclModel};
use crate::optim::{optimise, AdamConfig, AdamW, Flow, TrainStep};
use crate::session::{self, progress, progress_done, RunSize};
use crate::train::eval::{evaluate_with, EvalOptions, EvalReport};
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
    /// Which tensors get a mask (default all trainable ones, like the study).
    pub filter: MaskFilter,
    /// Evaluate the deterministic mask every N steps (default 100) and at the end.
    pub eval_every: usize,
    /// Problems per evaluation set (default 200; 0 = all).
    pub eval_problems: usize,
    /// Seed of the data order and of the mask samples (default 0).
    pub seed: u64,
    /// Stop when the mask has settled ([`Convergence`]); `steps` is then the cap (default: the
    /// rule's defaults). `None` runs all `steps`.
    pub convergence: Option<Convergence>,
}

/// The stopping rule of mask training: every `every` steps the kept fraction (`l > 0`) and the
/// undecided mass (fraction of logits with `|l| < 2`) are read from the logits (cheap: no
/// evaluation); training stops once both have moved by at most `tolerance` (absolute, as
/// fractions) over the last `window` readings, i.e. over `(window − 1) · every` steps. A mask
/// that hits the step cap first is recorded as not converged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Convergence {
    /// Steps between readings (default 50).
    pub every: usize,
    /// Readings the two values must stay within `tolerance` over (default 4).
    pub window: usize,
    /// Largest allowed range of each reading over the window (default 0.002 = 0.2 points).
    pub tolerance: f64,
}

impl Default for Convergence {
    fn default() -> Self {
        Convergence {
            every: 50,
            window: 4,
            tolerance: 0.002,
        }
    }
}

impl Convergence {
    /// Whether the last `window` readings `(kept, undecided)` each span at most `tolerance`.
    pub fn settled(&self, readings: &[(f64, f64)]) -> bool {
        let w = self.window.max(2);
        if readings.len() < w {
            return false;
        }
        let tail = &readings[readings.len() - w..];
        let range = |f: fn(&(f64, f64)) -> f64| {
            let (lo, hi) = tail
                .iter()
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
            hi - lo
        };
        range(|r| r.0) <= self.tolerance && range(|r| r.1) <= self.tolerance
    }
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
            convergence: Some(Convergence::default()),
        }
    }
}

impl MaskTrainConfig {
    /// Six steps of 8 problems at a high learning rate from logit 0.5: the fixture sets of CI.
    pub fn smoke() -> Self {
        MaskTrainConfig {
            steps: 6,
            batch_size: 8,
            lr: 0.2,
            logit_init: 0.5,
            eval_every: 3,
            eval_problems: 16,
            ..Default::default()
        }
    }

    /// The study run: 3,000 steps of 32, evaluation on 400 problems every 250 steps.
    pub fn study() -> Self {
        MaskTrainConfig {
            steps: 3000,
            eval_every: 250,
            eval_problems: 400,
            ..Default::default()
        }
    }

    /// [`Self::smoke`] or [`Self::study`] for the run size.
    pub fn for_size(size: RunSize) -> Self {
        size.pick(Self::smoke(), Self::study())
    }

    /// The settings that decide a module's size, as text (see [`Mask::settings`]): everything
    /// but the seed and the evaluation sizes.
    pub fn comparable_settings(&self) -> Vec<(String, String)> {
        let rule = match self.convergence {
            Some(c) => format!(
                "settled over {} evaluations within {}",
                c.window, c.tolerance
            ),
            None => "fixed steps".into(),
        };
        [
            ("alpha", format!("{:e}", self.alpha)),
            ("steps", self.steps.to_string()),
            ("lr", format!("{:e}", self.lr)),
            ("logit_init", self.logit_init.to_string()),
            ("samples", self.samples.to_string()),
            ("tau", self.tau.to_string()),
            ("filter", format!("{:?}", self.filter)),
            ("stopping", rule),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The optimiser of the logits: Adam at `lr`, no decay.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            clip_grad_norm: self.clip_grad_norm,
            ..AdamConfig::adam(self.lr)
        }
    }
}

crate::with_setters!(MaskTrainConfig {
    with_alpha => alpha: f64,
    with_tau => tau: f64,
    with_samples => samples: usize,
    with_batch_size => batch_size: usize,
    with_steps => steps: usize,
    with_lr => lr: f64,
    with_logit_init => logit_init: f64,
    with_clip_grad_norm => clip_grad_norm: Option<f64>,
    with_filter => filter: MaskFilter,
    with_eval_every => eval_every: usize,
    with_eval_problems => eval_problems: usize,
    with_seed => seed: u64,
    with_convergence => convergence: Option<Convergence>,
});

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
    /// Optimiser step (from 1).
    pub step: usize,
    /// Cross-entropy + α·Σ logits.
    pub loss: f64,
    /// Cross-entropy alone.
    pub cross_entropy: f64,
    /// Kept fraction of this step's samples.
    pub sample_kept: f64,
    /// Accuracy of this step's sampled masks on its batch.
    pub train_accuracy: f64,
    /// Deterministic-mask (`l > 0`) accuracy on held-out task problems, at evaluation steps.
    pub task_accuracy: Option<f64>,
    /// Deterministic-mask accuracy on the control problems, at evaluation steps.
    pub control_accuracy: Option<f64>,
    /// Inverted-mask accuracy on held-out task problems, at evaluation steps.
    pub inverted_task_accuracy: Option<f64>,
    /// Inverted-mask accuracy on the control problems, at evaluation steps.
    pub inverted_control_accuracy: Option<f64>,
    /// Kept fraction of the deterministic mask, at evaluation steps.
    pub kept_fraction: Option<f64>,
    /// Fraction of logits with `|l| < 2`, at evaluation steps (older logs lack it).
    #[serde(default)]
    pub undecided_fraction: Option<f64>,
}

/// The JSON sidecar of a saved mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaskSidecar {
    /// The mask's name (`squares`, `SCL_90/pentagons`).
    pub name: String,
    /// The shape task, when the mask is for one.
    #[serde(default)]
    pub shape: Option<Shape>,
    /// The settings it was trained with.
    pub config: MaskTrainConfig,
    /// The checkpoint the mask was trained on (a path `avr report` opens).
    pub base_checkpoint: String,
    /// FNV-1a hash of the base checkpoint's weights ([`params_hash`]).
    pub base_hash: String,
    /// Measured validation accuracy of the base checkpoint, when known.
    pub base_accuracy: Option<f64>,
    /// The task dataset folder.
    pub task_dataset: String,
    /// The control dataset folder (`originals`), if any.
    pub control_dataset: Option<String>,
    /// Optimiser steps done.
    pub steps_done: usize,
    /// Deterministic-mask accuracy on the held-out task problems at the end.
    pub final_task_accuracy: Option<f64>,
    /// Deterministic-mask accuracy on the control problems at the end.
    pub final_control_accuracy: Option<f64>,
    /// Inverted-mask accuracy on the task at the end.
    pub final_inverted_task_accuracy: Option<f64>,
    /// Inverted-mask accuracy on the control at the end.
    pub final_inverted_control_accuracy: Option<f64>,
    /// Kept fraction (`l > 0`).
    pub kept_fraction: f64,
    /// Crate version that wrote the file.
    pub code_version: String,
    /// The masked tensors in the model's order (a safetensors file keeps no order).
    #[serde(default)]
    pub tensors: Vec<String>,
    /// The step at which the stopping rule was met; `None` when it ran to the cap (not
    /// converged by the rule) or had no rule.
    #[serde(default)]
    pub converged_at: Option<usize>,
    /// CRC-32 of the logits file, checked on load (older sidecars lack it).
    #[serde(default)]
    pub logits_crc32: Option<u32>,
    /// How decided the final logits are (older sidecars lack it).
    #[serde(default)]
    pub decisiveness: Option<super::bits::Decisiveness>,
    /// The unmasked model on the same held-out task and control problems, with n and 95 %
    /// intervals: the reference every masked accuracy is a drop from.
    #[serde(default)]
    pub unmasked: Option<Unmasked>,
    /// Held-out task problems behind the task accuracies (n of their intervals).
    #[serde(default)]
    pub task_problems: usize,
    /// Control problems behind the control accuracies.
    #[serde(default)]
    pub control_problems: usize,
    /// libtorch's intra-op threads in the process that finished the mask (`AVR_THREADS`): the
    /// order of float reductions, so a rerun with another count differs in the last bits
    /// (older sidecars lack it).
    #[serde(default)]
    pub threads: Option<usize>,
    /// The vector instructions of the CPU that finished the mask ([`session::simd_level`]):
    /// with the thread count, what a bit-identical rerun needs (older sidecars lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simd: Option<String>,
}

/// The unmasked model's accuracies on a mask's evaluation sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmasked {
    /// On the held-out task problems.
    pub task: RecordedAccuracy,
    /// On the control problems, when there are any.
    pub control: Option<RecordedAccuracy>,
}

/// Where a mask came from: the base checkpoint and the datasets — recorded by the trainer, so
/// saving needs no arguments but a folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskProvenance {
    /// The base checkpoint's path.
    pub base_checkpoint: String,
    /// Hash of the base weights.
    pub base_hash: String,
    /// The base checkpoint's measured validation accuracy, when known.
    pub base_accuracy: Option<f64>,
    /// The task dataset folder.
    pub task_dataset: String,
    /// The control dataset folder.
    pub control_dataset: Option<String>,
    /// The shape task, when it is one.
    pub shape: Option<Shape>,
}

/// A finished mask-training run (its inline display, the training curves, is drawn by
/// [`crate::plot`]).
#[derive(Debug, Clone)]
pub struct MaskRun {
    /// The trained mask.
    pub mask: Mask,
    /// One row per step.
    pub metrics: Vec<MaskMetricRow>,
    /// The settings it was trained with.
    pub config: MaskTrainConfig,
    /// Base checkpoint and datasets.
    pub provenance: MaskProvenance,
    /// The step at which the stopping rule was met (`None`: it ran to the cap or had no rule).
    pub converged_at: Option<usize>,
    /// The unmasked model's accuracies on the same evaluation problems.
    pub unmasked: Option<Unmasked>,
    /// Held-out task problems evaluated.
    pub task_problems: usize,
    /// Control problems evaluated.
    pub control_problems: usize,
    /// libtorch's intra-op threads of the process that trained it (`None` for a mask loaded
    /// from a sidecar that lacks them).
    pub threads: Option<usize>,
    /// The vector instructions of the CPU that finished it (`None` when the sidecar lacks them).
    pub simd: Option<String>,
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

    /// The last recorded value of a metric.
    pub fn last(&self, f: fn(&MaskMetricRow) -> Option<f64>) -> Option<f64> {
        self.metrics.iter().rev().find_map(f)
    }

    /// The file stem the mask is saved under: its name with path separators and spaces made safe.
    pub fn file_stem(&self) -> String {
        self.mask
            .name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The sidecar this run saves.
    pub fn sidecar(&self) -> MaskSidecar {
        let (kept, total) = self.mask.kept();
        let p = &self.provenance;
        MaskSidecar {
            name: self.mask.name.clone(),
            shape: p.shape,
            config: self.config.clone(),
            base_checkpoint: p.base_checkpoint.clone(),
            base_hash: p.base_hash.clone(),
            base_accuracy: p.base_accuracy,
            task_dataset: p.task_dataset.clone(),
            control_dataset: p.control_dataset.clone(),
            steps_done: self.metrics.last().map_or(0, |r| r.step),
            final_task_accuracy: self.last(|r| r.task_accuracy),
            final_control_accuracy: self.last(|r| r.control_accuracy),
            final_inverted_task_accuracy: self.last(|r| r.inverted_task_accuracy),
            final_inverted_control_accuracy: self.last(|r| r.inverted_control_accuracy),
            kept_fraction: kept as f64 / total.max(1) as f64,
            code_version: env!("CARGO_PKG_VERSION").into(),
            tensors: self.mask.logits.names().to_vec(),
            converged_at: self.converged_at,
            logits_crc32: None,
            decisiveness: self.mask.decisiveness().ok(),
            unmasked: self.unmasked.clone(),
            task_problems: self.task_problems,
            control_problems: self.control_problems,
            threads: self.threads,
            simd: self.simd.clone(),
        }
    }

    /// Saves `<dir>/<file_stem>.safetensors` (logits) and its `.json` sidecar, both atomically;
    /// returns the weights' path.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<PathBuf> {
        self.save_as(
            &dir.as_ref()
                .join(format!("{}.safetensors", self.file_stem())),
        )
    }

    /// Saves the logits at `path` and the sidecar beside it.
    pub fn save_as(&self, path: &Path) -> Result<PathBuf> {
        // Sidecar first, then the logits into place: logits never lack their description.
        let staged = crate::checkpoint::stage_safetensors(path, &self.mask.logits)?;
        let sidecar = MaskSidecar {
            logits_crc32: Some(staged.crc32),
            ..self.sidecar()
        };
        let json = serde_json::to_vec_pretty(&sidecar).map_err(Error::from)?;
        crate::checkpoint::write_atomic(&path.with_extension("json"), &json)?;
        write_mask_readings_csv(&mask_readings_path(path), &self.metrics)?;
        staged.commit()?;
        Ok(path.to_path_buf())
    }

    /// A saved mask as a run: its logits, its sidecar and its readings (`<stem>.readings.csv`;
    /// none for masks saved before it was written). The inverse of [`Self::save_as`] but for
    /// the per-step rows between readings, which are not kept.
    pub fn load(path: impl AsRef<Path>) -> Result<MaskRun> {
        let path = path.as_ref();
        let mask = Mask::load(path)?;
        let s: MaskSidecar = crate::checkpoint::read_sidecar(path)?;
        let readings = mask_readings_path(path);
        let metrics = match readings.exists() {
            true => read_mask_readings_csv(&readings)?,
            false => vec![final_reading(&s)],
        };
        Ok(MaskRun {
            mask,
            metrics,
            config: s.config,
            provenance: MaskProvenance {
                base_checkpoint: s.base_checkpoint,
                base_hash: s.base_hash,
                base_accuracy: s.base_accuracy,
                task_dataset: s.task_dataset,
                control_dataset: s.control_dataset,
                shape: s.shape,
            },
            converged_at: s.converged_at,
            unmasked: s.unmasked,
            task_problems: s.task_problems,
            control_problems: s.control_problems,
            threads: s.threads,
            simd: s.simd,
        })
    }
}

/// A mask saved without readings (before they were written): its sidecar's final reading as
/// the one row of its log (losses unknown: NaN).
fn final_reading(s: &MaskSidecar) -> MaskMetricRow {
    MaskMetricRow {
        step: s.steps_done,
        loss: f64::NAN,
        cross_entropy: f64::NAN,
        sample_kept: f64::NAN,
        train_accuracy: f64::NAN,
        task_accuracy: s.final_task_accuracy,
        control_accuracy: s.final_control_accuracy,
        inverted_task_accuracy: s.final_inverted_task_accuracy,
        inverted_control_accuracy: s.final_inverted_control_accuracy,
        kept_fraction: Some(s.kept_fraction),
        undecided_fraction: s.decisiveness.as_ref().map(|d| d.undecided_fraction),
    }
}

/// `<stem>.readings.csv` beside a mask's logits.
pub fn mask_readings_path(logits: &Path) -> PathBuf {
    logits.with_extension("readings.csv")
}

const READINGS_HEADER: &str = "step,loss,cross_entropy,sample_kept,train_accuracy,task_accuracy,\
control_accuracy,inverted_task_accuracy,inverted_control_accuracy,kept_fraction,undecided_fraction";

/// Writes the rows of a mask's log that hold a reading (an evaluation or a convergence reading),
/// plus the last: the curves of a finished mask, ~250 rows for 12,000 steps rather than 12,000.
pub fn write_mask_readings_csv(path: &Path, metrics: &[MaskMetricRow]) -> Result<()> {
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut text = format!("{READINGS_HEADER}\n");
    let last = metrics.len().saturating_sub(1);
    for (i, r) in metrics.iter().enumerate() {
        let reading = r.task_accuracy.is_some() || r.kept_fraction.is_some();
        if !reading && i != last {
            continue;
        }
        text += &format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            r.step,
            r.loss,
            r.cross_entropy,
            r.sample_kept,
            r.train_accuracy,
            opt(r.task_accuracy),
            opt(r.control_accuracy),
            opt(r.inverted_task_accuracy),
            opt(r.inverted_control_accuracy),
            opt(r.kept_fraction),
            opt(r.undecided_fraction)
        );
    }
    crate::checkpoint::write_atomic(path, text.as_bytes())
}

/// Reads [`write_mask_readings_csv`]'s file; errors name the file and line.
pub fn read_mask_readings_csv(path: &Path) -> Result<Vec<MaskMetricRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, h)| h.trim()) != Some(READINGS_HEADER) {
        return Err(Error::bad_file(
            path,
            format!("expected the header '{READINGS_HEADER}'"),
        ));
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let bad =
                || Error::bad_file(path, format!("line {}: '{line}' is not 11 numbers", i + 1));
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 11 {
                return Err(bad());
            }
            let num = |k: usize| f[k].parse::<f64>().map_err(|_| bad());
            let opt = |k: usize| match f[k].is_empty() {
                true => Ok(None),
                false => num(k).map(Some),
            };
            Ok(MaskMetricRow {
                step: f[0].parse().map_err(|_| bad())?,
                loss: num(1)?,
                cross_entropy: num(2)?,
                sample_kept: num(3)?,
                train_accuracy: num(4)?,
                task_accuracy: opt(5)?,
                control_accuracy: opt(6)?,
                inverted_task_accuracy: opt(7)?,
                inverted_control_accuracy: opt(8)?,
                kept_fraction: opt(9)?,
                undecided_fraction: opt(10)?,
            })
        })
        .collect()
}

/// FNV-1a over every tensor's name and bytes: identifies the frozen weights a mask belongs to.
pub fn params_hash(params: &Params) -> Result<String> {
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
        let values: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1))?;
        values.iter().for_each(|v| feed(&v.to_le_bytes()));
    }
    Ok(format!("{h:016x}"))
}

/// What a mask is trained for: a task's fitting and held-out problems, and the control set.
#[derive(Debug, Clone)]
pub struct MaskTask<'a> {
    /// The mask's name.
    pub name: String,
    /// The shape, when the task is one.
    pub shape: Option<Shape>,
    /// Problems the mask is fitted on.
    pub fit: &'a AvrDataset,
    /// Held-out task problems (task and inverted-task accuracy).
    pub held_out: &'a AvrDataset,
    /// Control problems (the `originals`), if any.
    pub control: Option<&'a AvrDataset>,
}

/// Trains a mask for `task` on the frozen `ckpt`, evaluating the deterministic mask and its
/// inverse on the held-out task problems and, when given, the control set.
pub fn train_mask(
    ckpt: &Checkpoint,
    task: &MaskTask<'_>,
    cfg: &MaskTrainConfig,
) -> Result<MaskRun> {
    train_mask_with_fixed(ckpt, task, cfg, None)
}

/// Mask training as a [`TrainStep`]: K-batched Gumbel samples, evaluation every few steps.
struct MaskTraining<'a> {
    model: &'a SclModel,
    specs: Vec<crate::model::ParamSpec>,
    base: Params,
    logits: FlatLogits,
    loader: Loader,
    k: i64,
    cfg: &'a MaskTrainConfig,
    name: &'a str,
    task_val: AvrDataset,
    control: Option<AvrDataset>,
    metrics: Vec<MaskMetricRow>,
    /// This step's cross-entropy, outputs, targets and 0/1 draw, for the log row.
    last: Option<(f64, Tensor, Tensor, Tensor)>,
    /// `(kept fraction, undecided fraction)` at every evaluation, for the stopping rule.
    readings: Vec<(f64, f64)>,
    /// The step at which the stopping rule was met.
    converged_at: Option<usize>,
    /// [`params_hash`] of the base weights (resumable state belongs to them).
    base_hash: String,
    /// The task's sets and fixed mask in words (resumable state belongs to them).
    task_key: String,
    /// Where and how often the resumable state is written.
    resume: Option<&'a MaskResume>,
}

/// Resumable mask training: every `every` steps the logits, Adam's moments and the log (as a
/// `state.json` byte tensor) are written atomically to one file, `path` (`<out>.resume`), so a
/// killed run continues from the last save with the same result as an uninterrupted one; the
/// caller removes it once the mask is saved. A state of other settings, another checkpoint or
/// another task, or one that does not fit the logits, is not resumed: the run restarts from
/// step 0 (the rule), saying why.
#[derive(Debug, Clone)]
pub struct MaskResume {
    /// The state file (`<out>.resume`).
    pub path: PathBuf,
    /// Steps between saves (0: never save; a saved state is still resumed).
    pub every: usize,
}

/// The log half of a mask's resumable state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MaskState {
    step: usize,
    adam_step: i32,
    config: MaskTrainConfig,
    base_hash: String,
    /// What the mask is trained on: task, held-out and control sets (folders and sizes) and
    /// the fixed mask, if any.
    task: String,
    metrics: Vec<MaskMetricRow>,
    readings: Vec<(f64, f64)>,
}

impl MaskResume {
    /// `<out>` → `<out>.resume` beside it (`squares-s0.safetensors.resume`).
    pub fn beside(out: &Path, every: usize) -> Result<Self> {
        if out.extension().is_some_and(|e| e == "resume") {
            return Err(Error::Config(format!(
                "{}: a mask's file may not end in .resume (that names its resumable state)",
                out.display()
            )));
        }
        let mut path = out.as_os_str().to_owned();
        path.push(".resume");
        Ok(MaskResume {
            path: PathBuf::from(path),
            every,
        })
    }

    fn save(&self, training: &MaskTraining<'_>, step: usize, opt: &AdamW) -> Result<()> {
        let (m, v) = &opt.moments[0];
        let state = MaskState {
            step,
            adam_step: opt.step,
            config: training.cfg.clone(),
            base_hash: training.base_hash.clone(),
            task: training.task_key.clone(),
            metrics: training.metrics.clone(),
            readings: training.readings.clone(),
        };
        let mut tensors = Params::new();
        tensors.insert("logits", training.logits.flat.detach());
        tensors.insert("adam.m", m.shallow_clone());
        tensors.insert("adam.v", v.shallow_clone());
        tensors.insert(
            "state.json",
            Tensor::from_slice(&serde_json::to_vec(&state)?),
        );
        crate::checkpoint::write_safetensors_atomic(&self.path, &tensors).map(drop)
    }

    /// The saved state, if there is one that this run can continue; otherwise why not.
    fn load(
        &self,
        cfg: &MaskTrainConfig,
        base_hash: &str,
        task_key: &str,
        logits: &Tensor,
    ) -> std::result::Result<(MaskState, Params), String> {
        let tensors = crate::checkpoint::read_safetensors(&self.path).map_err(|e| e.to_string())?;
        let json = tensors
            .get("state.json")
            .ok()
            .and_then(|t| Vec::<u8>::try_from(t).ok())
            .ok_or("it holds no state.json")?;
        let state: MaskState =
            serde_json::from_slice(&json).map_err(|e| format!("unreadable state: {e}"))?;
        if serde_json::to_value(&state.config).ok() != serde_json::to_value(cfg).ok() {
            return Err("it was saved with other settings".into());
        }
        if state.base_hash != base_hash {
            return Err("it belongs to another checkpoint".into());
        }
        if state.task != task_key {
            return Err(format!("it belongs to another task ({})", state.task));
        }
        for name in ["logits", "adam.m", "adam.v"] {
            match tensors.get(name) {
                Ok(t) if t.size() == logits.size() && t.kind() == logits.kind() => {}
                _ => return Err(format!("its '{name}' does not fit the mask's logits")),
            }
        }
        if state.step >= cfg.steps || state.metrics.len() != state.step {
            return Err(format!("its log does not match step {}", state.step));
        }
        Ok((state, tensors))
    }

    /// Removes the state file: call it once the finished mask is saved (until then a kill
    /// resumes from the last save instead of losing the run).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl TrainStep for MaskTraining<'_> {
    fn loss(&mut self, step: usize) -> Result<Tensor> {
        // The noise of each step comes from the seed and the step alone, so a resumed run
        // draws what an uninterrupted one would.
        tch::manual_seed(
            crate::rng::Rng::new(self.cfg.seed)
                .fork(&format!("mask noise {step}"))
                .below(i64::MAX as usize) as i64,
        );
        let batch: Batch = self.loader.next().ok_or_else(|| {
            Error::DataExhausted(format!("mask '{}': data ran out at step {step}", self.name))
        })??;
        let b = batch.targets.size()[0];
        // Drop a ragged tail so the K chunks are equal.
        let usable = b - b % self.k;
        if usable == 0 {
            return Err(Error::Config(format!(
                "mask '{}': a batch of {b} problems cannot feed {} mask samples",
                self.name, self.k
            )));
        }
        let (x, y) = (
            batch.images.narrow(0, 0, usable),
            batch.targets.narrow(0, 0, usable),
        );
        let (params, draw) = self
            .logits
            .sample(&self.specs, &self.base, self.k, self.cfg.tau)?;
        let out = self.model.logits_with(&params, &x, BnMode::Eval)?;
        let ce = out.cross_entropy_for_logits(&y);
        let loss = &ce + self.logits.sum() * self.cfg.alpha;
        self.last = Some((ce.double_value(&[]), out, y, draw));
        Ok(loss)
    }

    fn after_update(&mut self, step: usize, loss: f64, opt: &AdamW) -> Result<Flow> {
        let (ce, out, y, draw) = self
            .last
            .take()
            .ok_or_else(|| Error::Config("mask step without a loss".into()))?;
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
            loss,
            cross_entropy: ce,
            sample_kept,
            train_accuracy,
            task_accuracy: None,
            control_accuracy: None,
            inverted_task_accuracy: None,
            inverted_control_accuracy: None,
            kept_fraction: None,
            undecided_fraction: None,
        };
        let mut flow = Flow::Continue;
        if let Some(rule) = self.cfg.convergence.filter(|r| step % r.every.max(1) == 0) {
            let mask = Mask::new(self.name, self.logits.to_params(), None);
            let (kept, total) = mask.kept();
            let reading = (
                kept as f64 / total.max(1) as f64,
                mask.decisiveness()?.undecided_fraction,
            );
            (row.kept_fraction, row.undecided_fraction) = (Some(reading.0), Some(reading.1));
            // Readings count once the mask has started to move: at the start every logit sits
            // at `logit_init`, so kept = 100 % and nothing is undecided — "settled" trivially.
            let moved = reading.0 < 1.0 - 1e-9 || reading.1 > 1e-9;
            if moved || !self.readings.is_empty() {
                self.readings.push(reading);
            }
            if rule.settled(&self.readings) {
                self.converged_at = Some(step);
                flow = Flow::Stop;
            }
        }
        let last = step == self.cfg.steps || flow == Flow::Stop;
        if step % self.cfg.eval_every.max(1) == 0 || last {
            self.evaluate_into(&mut row)?;
            progress(&format!(
                "[mask {}] step {step:>5}/{} loss {loss:.4} task {:.3} control {} inverted task {:.3} kept {:.2} %",
                self.name,
                self.cfg.steps,
                row.task_accuracy.unwrap_or(0.0),
                row.control_accuracy.map(|v| format!("{v:.3}")).unwrap_or("-".into()),
                row.inverted_task_accuracy.unwrap_or(0.0),
                100.0 * row.kept_fraction.unwrap_or(0.0)
            ));
        }
        self.metrics.push(row);
        if let Some(r) = self
            .resume
            .filter(|r| r.every > 0 && step % r.every == 0 && !last)
        {
            r.save(self, step, opt)?;
        }
        Ok(flow)
    }
}

impl MaskTraining<'_> {
    /// The deterministic mask (`l > 0`) and its inverse on the held-out task and control sets.
    fn evaluate_into(&self, row: &mut MaskMetricRow) -> Result<()> {
        let mask = Mask::new(self.name, self.logits.to_params(), Some(self.cfg.alpha));
        let acc = |data: &AvrDataset, invert: bool| -> Result<f64> {
            Ok(evaluate_masked(self.model, &self.base, &mask, invert, data)?.accuracy)
        };
        row.task_accuracy = Some(acc(&self.task_val, false)?);
        row.inverted_task_accuracy = Some(acc(&self.task_val, true)?);
        if let Some(c) = &self.control {
            row.control_accuracy = Some(acc(c, false)?);
            row.inverted_control_accuracy = Some(acc(c, true)?);
        }
        let (kept, total) = mask.kept();
        row.kept_fraction = Some(kept as f64 / total.max(1) as f64);
        row.undecided_fraction = Some(mask.decisiveness()?.undecided_fraction);
        Ok(())
    }
}

/// The deterministic `mask` (or its inverse) applied to `base`, read on `data`: how training
/// scores a mask and how [`validation_outcomes`] reads it again, so the two cannot drift apart.
fn evaluate_masked(
    model: &SclModel,
    base: &Params,
    mask: &Mask,
    invert: bool,
    data: &AvrDataset,
) -> Result<EvalReport> {
    let opts = EvalOptions {
        batch_size: 32,
        device: model.device(),
    };
    evaluate_with(model, &mask.apply(base, invert)?, data, &opts)
}

/// [`train_mask`] with some tensors held by a fixed ("temporary") mask that is not trained.
pub fn train_mask_with_fixed(
    ckpt: &Checkpoint,
    task: &MaskTask<'_>,
    cfg: &MaskTrainConfig,
    fixed: Option<&Mask>,
) -> Result<MaskRun> {
    train_mask_resumable(ckpt, task, cfg, fixed, None)
}

/// [`train_mask_with_fixed`] that saves its state now and then and continues from a saved
/// state ([`MaskResume`]); the state files are removed when the run ends.
pub fn train_mask_resumable(
    ckpt: &Checkpoint,
    task: &MaskTask<'_>,
    cfg: &MaskTrainConfig,
    fixed: Option<&Mask>,
    resume: Option<&MaskResume>,
) -> Result<MaskRun> {
    let (model, name) = (&ckpt.model, task.name.as_str());
    let k = cfg.samples.max(1);
    if cfg.batch_size % k != 0 {
        return Err(Error::Config(format!(
            "mask batch {} must be divisible by the {k} mask samples",
            cfg.batch_size
        )));
    }
    if task.fit.is_empty() || task.held_out.is_empty() {
        return Err(Error::NotEnough(format!(
            "mask '{name}': empty task dataset"
        )));
    }
    tch::manual_seed(cfg.seed as i64);
    let device = model.device();
    let base = match fixed {
        Some(m) => m.apply(&model.params, false)?,
        None => model.params.clone(),
    };
    let logits = FlatLogits::new(&init_logits(model, cfg.filter, cfg.logit_init, fixed));
    let leaves = [logits.flat.shallow_clone()];
    let mut opt = AdamW::new(&leaves);
    let mut order = EpochOrder::new(cfg.seed, task.fit.len(), true);
    let loader_cfg = LoaderConfig {
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        options: model.batch_options(),
        ..Default::default()
    };
    let base_hash = params_hash(&model.params)?;
    let task_key = format!(
        "fit {} ({}), held-out {} ({}), control {}, fixed {}",
        task.fit.root.display(),
        task.fit.len(),
        task.held_out.root.display(),
        task.held_out.len(),
        task.control.map_or("none".into(), |c| format!(
            "{} ({})",
            c.root.display(),
            c.len()
        )),
        match fixed {
            Some(m) => params_hash(&m.logits)?,
            None => "none".into(),
        }
    );
    let saved = match resume.map(|r| r.load(cfg, &base_hash, &task_key, &logits.flat)) {
        Some(Ok(saved)) => Some(saved),
        Some(Err(why)) if resume.is_some_and(|r| r.path.exists()) => {
            progress(&format!("[mask {name}] not resuming: {why}; starting over"));
            None
        }
        _ => None,
    };
    let start = saved.as_ref().map_or(0, |(s, _)| s.step);
    // Replay the data order up to the saved step.
    (0..start).for_each(|_| drop(order.next_batch(cfg.batch_size)));
    let loader = Loader::from_order(task.fit, &mut order, cfg.steps - start, &loader_cfg, device);
    let task_val = task.held_out.spread(cfg.eval_problems);
    let control = task.control.map(|c| c.spread(cfg.eval_problems));
    let unmasked = unmasked_accuracies(ckpt, &task_val, control.as_ref())?;
    let (task_problems, control_problems) =
        (task_val.len(), control.as_ref().map_or(0, |c| c.len()));
    let mut training = MaskTraining {
        model,
        specs: model.param_specs(),
        base,
        logits,
        loader,
        k: k as i64,
        cfg,
        name,
        task_val,
        control,
        metrics: Vec::new(),
        last: None,
        readings: Vec::new(),
        converged_at: None,
        base_hash,
        task_key,
        resume,
    };
    if let Some((state, tensors)) = saved {
        let _guard = tch::no_grad_guard();
        training
            .logits
            .flat
            .shallow_clone()
            .copy_(tensors.get("logits")?);
        let (m, v) = &mut opt.moments[0];
        m.copy_(tensors.get("adam.m")?);
        v.copy_(tensors.get("adam.v")?);
        opt.step = state.adam_step;
        (training.metrics, training.readings) = (state.metrics, state.readings);
        progress(&format!("[mask {name}] resuming from step {start}"));
    }
    optimise(
        &mut training,
        &leaves,
        &mut opt,
        &cfg.adam(),
        start + 1..=cfg.steps,
    )?;
    progress_done();
    let provenance = MaskProvenance {
        base_checkpoint: ckpt.path_string(),
        base_hash: training.base_hash.clone(),
        base_accuracy: ckpt.val_accuracy(),
        task_dataset: task.fit.root.display().to_string(),
        control_dataset: task.control.map(|c| c.root.display().to_string()),
        shape: task.shape,
    };
    Ok(MaskRun {
        mask: Mask::new(name, training.logits.to_params(), Some(cfg.alpha)).with_settings(cfg),
        metrics: training.metrics,
        config: cfg.clone(),
        provenance,
        converged_at: training.converged_at,
        unmasked: Some(unmasked),
        task_problems,
        control_problems,
        threads: Some(tch::get_num_threads().max(1) as usize),
        simd: Some(session::simd_level().into()),
    })
}

/// The frozen model without a mask on a mask's evaluation sets.
fn unmasked_accuracies(
    ckpt: &Checkpoint,
    task: &AvrDataset,
    control: Option<&AvrDataset>,
) -> Result<Unmasked> {
    let opts = EvalOptions {
        batch_size: 32,
        device: ckpt.model.device(),
    };
    let read = |data: &AvrDataset, splits: &str| -> Result<RecordedAccuracy> {
        let report = crate::train::eval::evaluate(&ckpt.model, data, &opts)?;
        Ok(report.recorded(&data.root.display().to_string(), vec![splits.into()]))
    };
    Ok(Unmasked {
        task: read(task, "held-out")?,
        control: control.map(|c| read(c, "control")).transpose()?,
    })
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

/// `steps` mask-training steps (frozen weights, K samples, eval BN) on random panels, each
/// timed after two warm-up steps — `avr bench mask`; the same loop as [`train_mask`].
pub fn bench_mask_steps(
    model: &SclModel,
    batch: usize,
    samples: usize,
    steps: usize,
    batching: SampleBatching,
) -> Result<crate::bench::StepTimes> {
    let device = model.device();
    let s = model.image_size();
    let logits = FlatLogits::new(&init_logits(model, MaskFilter::All, 2.5, None));
    let leaves = [logits.flat.shallow_clone()];
    let specs = model.param_specs();
    let mut opt = AdamW::new(&leaves);
    let x = Tensor::rand([batch as i64, 16, s, s], (Kind::Float, device));
    let y = Tensor::randint(8, [batch as i64], (Kind::Int64, device));
    let k = samples.max(1) as i64;
    let loss = |_step: usize| -> Result<Tensor> {
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
        Ok(ce + reg)
    };
    let mut task = crate::bench::Timed::new(batch, 2, loss);
    optimise(
        &mut task,
        &leaves,
        &mut opt,
        &AdamConfig::adam(1e-2),
        1..=steps.max(1) + 2,
    )?;
    Ok(task.times())
}

/// The α sweep: one mask per α, and the selection rule made explicit.
#[derive(Debug, Clone)]
pub struct AlphaSweep {
    /// One run per α, in the order given.
    pub runs: Vec<MaskRun>,
    /// Allowed drop of task accuracy from the smallest-α run (default 0.05).
    pub tolerance: f64,
    /// Index of the chosen run: the largest α whose final task accuracy is within `tolerance`
    /// of the smallest-α run's (the sparsest mask that still does the task).
    pub chosen: usize,
}

impl AlphaSweep {
    /// The α stage from saved masks (one per α, e.g. the study's `binary_masks/study-alpha/`):
    /// [`select_alpha`] on their final validation task accuracies, as [`alpha_sweep`] chooses.
    /// Masks without a final task accuracy, or that disagree on checkpoint or task, are refused
    /// with the file named.
    pub fn from_masks(masks: &[PathBuf], tolerance: f64) -> Result<AlphaSweep> {
        let runs = masks
            .iter()
            .map(MaskRun::load)
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = runs.first() else {
            return Err(Error::NotEnough(
                "α stage: no masks given (one per α is needed)".into(),
            ));
        };
        let mut scores = Vec::new();
        for (path, run) in masks.iter().zip(&runs) {
            let (p, f) = (&run.provenance, &first.provenance);
            if p.base_hash != f.base_hash || p.task_dataset != f.task_dataset {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "α stage: trained on {} / {}, the first mask on {} / {}",
                        p.base_checkpoint, p.task_dataset, f.base_checkpoint, f.task_dataset
                    ),
                ));
            }
            let accuracy = run.last(|m| m.task_accuracy).ok_or_else(|| {
                Error::bad_file(path, "α stage: the mask has no final task accuracy")
            })?;
            scores.push((run.config.alpha, accuracy));
        }
        Ok(AlphaSweep {
            chosen: select_alpha(&scores, tolerance),
            runs,
            tolerance,
        })
    }

    /// The chosen α (a sweep always holds at least one run: [`alpha_sweep`] refuses an empty list).
    pub fn chosen_alpha(&self) -> f64 {
        self.runs
            .get(self.chosen)
            .map_or(f64::NAN, |r| r.config.alpha)
    }

    /// The chosen run.
    pub fn chosen_run(&self) -> Option<&MaskRun> {
        self.runs.get(self.chosen)
    }

    /// The study's record of the choice: every α with its final kept fraction and validation
    /// task accuracy (n), the rule, and the chosen α — the one α of a study, on file beside its
    /// masks.
    pub fn record(&self) -> serde_json::Value {
        let runs = self
            .runs
            .iter()
            .map(|r| {
                let (kept, total) = r.mask.kept();
                serde_json::json!({
                    "alpha": r.config.alpha,
                    "kept_fraction": kept as f64 / total.max(1) as f64,
                    "val_task_accuracy": r.last(|m| m.task_accuracy),
                    "val_problems": r.task_problems,
                    "converged_at": r.converged_at,
                    "steps_done": r.metrics.last().map_or(0, |m| m.step),
                })
            })
            .collect::<Vec<_>>();
        serde_json::json!({
            "rule": format!(
                "the largest α whose validation task accuracy is within {} of the smallest α's",
                self.tolerance
            ),
            "chosen_alpha": self.chosen_alpha(),
            "runs": runs,
        })
    }

    /// [`AlphaSweep::record`], written atomically as JSON to `path`.
    pub fn save_record(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.record()).map_err(Error::from)?;
        crate::checkpoint::write_atomic(path, &text)
    }

    /// α, kept %, task / control / inverted accuracies of every run, and which was chosen.
    pub fn table(&self) -> Result<Table> {
        let last = |r: &MaskRun, f: fn(&MaskMetricRow) -> Option<f64>| r.last(f).map(|v| 100.0 * v);
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

    /// Inline display: the sweep table.
    pub fn evcxr_display(&self) {
        match self.table() {
            Ok(t) => t.evcxr_display(),
            Err(e) => println!("{e}"),
        }
    }
}

/// The α rule's tolerance: the study's α is the largest whose validation task accuracy is within
/// 5 points of the smallest α's.
pub const ALPHA_TOLERANCE: f64 = 0.05;

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

/// The α stage of a study from finished masks ([`AlphaSweep::from_masks`]): its
/// [`AlphaSweep::record`], each row naming its mask (and, with [`RecordOutcomes::PerProblem`],
/// its [`validation_outcomes`]), with the checkpoint and task.
pub fn alpha_record_from_masks(
    masks: &[PathBuf],
    tolerance: f64,
    outcomes: RecordOutcomes,
) -> Result<serde_json::Value> {
    let sweep = AlphaSweep::from_masks(masks, tolerance)?;
    let mut record = sweep.record();
    if let Some(rows) = record["runs"].as_array_mut() {
        for ((row, path), run) in rows.iter_mut().zip(masks).zip(&sweep.runs) {
            *row = row.take().with("mask", path);
            if outcomes == RecordOutcomes::PerProblem {
                *row = row
                    .take()
                    .with("val_outcomes", validation_outcomes(path, run)?);
            }
        }
    }
    let first = &sweep.runs[0].provenance;
    Ok(record
        .with("checkpoint", &first.base_checkpoint)
        .with("task", &first.task_dataset))
}

/// What an α record keeps of each candidate's validation reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcomes {
    /// Each problem's outcome (`val_outcomes`), read again from the mask, its checkpoint and
    /// its task data, which must all be present: candidates are then compared problem by
    /// problem (a paired test).
    PerProblem,
    /// The accuracies alone (the masks' sidecars suffice); comparisons are then unpaired.
    AccuracyOnly,
}

/// The saved mask `run` (from `path`) read again on the validation problems it was scored on
/// (its task's held-out split, spread to the run's `task_problems`, in order), one `1` or `0`
/// per problem: with these a record's readings can be compared problem by problem. A
/// re-reading that differs from the run's recorded final accuracy is an error naming the mask:
/// its checkpoint or its data is then not what it was trained on.
pub fn validation_outcomes(path: &Path, run: &MaskRun) -> Result<String> {
    let p = &run.provenance;
    let ckpt = Checkpoint::load(&p.base_checkpoint)
        .map_err(|e| Error::bad_file(path, format!("its checkpoint does not load: {e}")))?;
    let task = AvrDataset::open(&p.task_dataset)
        .map_err(|e| Error::bad_file(path, format!("its task data does not open: {e}")))?;
    let held_out = task
        .first_split(&[Split::Val, Split::Test])
        .spread(run.task_problems);
    let report = evaluate_masked(&ckpt.model, &ckpt.model.params, &run.mask, false, &held_out)?;
    match run.last(|m| m.task_accuracy) {
        Some(recorded) if (recorded - report.accuracy).abs() > 1e-9 => Err(Error::bad_file(
            path,
            format!(
                "read again on its {} validation problems it scores {}, but its record says {}: \
                 its checkpoint or task data has changed since it was trained",
                report.n, report.accuracy, recorded
            ),
        )),
        _ => Ok(report
            .outcomes
            .iter()
            .map(|&hit| if hit { '1' } else { '0' })
            .collect()),
    }
}

/// Adds a field to a JSON object (a record row) in a chain.
trait WithField {
    fn with(self, key: &str, value: impl serde::Serialize) -> Self;
}

impl WithField for serde_json::Value {
    fn with(mut self, key: &str, value: impl serde::Serialize) -> Self {
        if let (Some(object), Ok(value)) = (self.as_object_mut(), serde_json::to_value(value)) {
            object.insert(key.to_string(), value);
        }
        self
    }
}

/// Trains one mask per α (everything else from `cfg`) and applies [`select_alpha`] with a
/// tolerance of 5 points. An empty list of α is an error.
pub fn alpha_sweep(
    ckpt: &Checkpoint,
    task: &MaskTask<'_>,
    cfg: &MaskTrainConfig,
    alphas: &[f64],
) -> Result<AlphaSweep> {
    if alphas.is_empty() {
        return Err(Error::NotEnough(format!(
            "α sweep for '{}': the list of α values is empty",
            task.name
        )));
    }
    let runs = alphas
        .iter()
        .map(|&alpha| {
            let named = MaskTask {
                name: format!("{} α={alpha:e}", task.name),
                ..task.clone()
            };
            train_mask(ckpt, &named, &cfg.clone().with_alpha(alpha))
        })
        .collect::<Result<Vec<_>>>()?;
    let scores: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| (r.config.alpha, r.last(|m| m.task_accuracy).unwrap_or(0.0)))
        .collect();
    let tolerance = ALPHA_TOLERANCE;
    Ok(AlphaSweep {
        chosen: select_alpha(&scores, tolerance),
        runs,
        tolerance,
    })
}
