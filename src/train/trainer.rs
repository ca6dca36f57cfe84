//! Training SCL: AdamW with decoupled weight decay, optional gradient clipping, gradients zeroed
//! every step (the study forgot), per-epoch seeded shuffling, BatchNorm in train mode for steps
//! and eval mode for validation, and milestone checkpoints named from the *measured* validation
//! accuracy (the study named them by list position).

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::eval::{evaluate, EvalOptions};
use crate::checkpoint::{write_atomic, CheckpointSidecar};
use crate::data::dataset::Batch;
use crate::data::loader::{EpochOrder, Loader, LoaderConfig};
use crate::data::AvrDataset;
use crate::display::Table;
use crate::model::{in_precision, BnMode, Params, Precision, SclModel};
use crate::optim::{optimise, AdamConfig, AdamW, Flow, TrainStep};
use crate::session::{progress, progress_done, RunSize};
use crate::{Error, Result};

/// Training settings; defaults are the official SCL README's optimiser on a CPU-sized batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Learning rate (default 5e-3).
    pub lr: f64,
    /// Decoupled weight decay (AdamW; 0 gives Adam) (default 0.01).
    pub weight_decay: f64,
    /// Adam β₁, β₂ (default 0.9, 0.999).
    pub betas: (f64, f64),
    /// Adam ε (default 1e-8).
    pub eps: f64,
    /// Problems per step (default 32).
    pub batch_size: usize,
    /// Optimiser steps (default 1000).
    pub steps: usize,
    /// Validate every this many steps (default 100); also at the end.
    pub val_every: usize,
    /// Clip the global gradient norm to this value (default none).
    pub clip_grad_norm: Option<f64>,
    /// Validation accuracies (fractions) that trigger a milestone checkpoint the first time they
    /// are reached (default 0.5, 0.6, 0.7, 0.8, 0.9).
    pub milestones: Vec<f64>,
    /// Seed for data order (init is seeded when the model is built) (default 0).
    pub seed: u64,
    /// Write the resumable state (`<out>/last.safetensors` + `last.json`: weights, Adam moments,
    /// step, log) every this many steps (default 50; needs an output folder).
    pub state_every: usize,
    /// Continue from `<out>/last.*` if present (default false).
    pub resume: bool,
    /// Before every validation (and so every milestone), re-estimate the BatchNorm running
    /// statistics from this many fixed training batches at the current weights (default 30;
    /// 0 keeps the running averages of training). Why: the running averages (momentum 0.1)
    /// trail weights that move; on the study run they read 45.9 % at step 5,000 where batch
    /// statistics read 66.5 % on the same 2,100 validation problems. Training itself is
    /// unaffected (train-mode BatchNorm uses batch statistics).
    pub bn_recalibration_batches: usize,
    /// Stop after the first validation at or above this accuracy (fraction) (default none:
    /// run all `steps`). The study run stops at 0.9 or after 60 epochs, whichever comes first.
    pub stop_at_accuracy: Option<f64>,
    /// The number format of the training steps' convolutions and matrix products (default
    /// f32). `Bf16` is autocast-style ([`Precision::Bf16`]): f32 master weights, Adam, norms
    /// and loss; validation and checkpoints are f32. Measured on this CPU: BENCHMARKS.md.
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 5e-3,
            weight_decay: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            batch_size: 32,
            steps: 1000,
            val_every: 100,
            clip_grad_norm: None,
            milestones: vec![0.5, 0.6, 0.7, 0.8, 0.9],
            seed: 0,
            state_every: 50,
            resume: false,
            bn_recalibration_batches: 30,
            stop_at_accuracy: None,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// A few steps on a tiny set: what CI's notebooks run (`AVR_SMOKE=1`).
    pub fn smoke() -> Self {
        TrainConfig {
            steps: 40,
            batch_size: 16,
            val_every: 10,
            milestones: vec![0.0, 0.3],
            ..Default::default()
        }
    }

    /// The study run: the study's learning rate 1e-3 (5e-3 made validation accuracy swing on
    /// small sets), 20,000 steps of 32, validation every 500, milestones 30–90 %.
    pub fn study() -> Self {
        TrainConfig {
            lr: 1e-3,
            steps: 20_000,
            val_every: 500,
            milestones: vec![0.3, 0.5, 0.7, 0.8, 0.9],
            ..Default::default()
        }
    }

    /// [`Self::smoke`] or [`Self::study`] for the run size.
    pub fn for_size(size: RunSize) -> Self {
        size.pick(Self::smoke(), Self::study())
    }

    /// The optimiser settings of this config.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            betas: self.betas,
            eps: self.eps,
            clip_grad_norm: self.clip_grad_norm,
        }
    }
}

crate::with_setters!(TrainConfig {
    with_lr => lr: f64,
    with_weight_decay => weight_decay: f64,
    with_batch_size => batch_size: usize,
    with_steps => steps: usize,
    with_val_every => val_every: usize,
    with_clip_grad_norm => clip_grad_norm: Option<f64>,
    with_milestones => milestones: Vec<f64>,
    with_seed => seed: u64,
    with_state_every => state_every: usize,
    with_resume => resume: bool,
    with_stop_at_accuracy => stop_at_accuracy: Option<f64>,
    with_bn_recalibration_batches => bn_recalibration_batches: usize,
    with_precision => precision: Precision,
});

/// Writes the log as `metrics.csv` (`step,epoch,train_loss,train_accuracy,val_accuracy`).
pub fn write_metrics_csv(path: &Path, metrics: &[MetricRow]) -> Result<()> {
    let mut text = String::from("step,epoch,train_loss,train_accuracy,val_accuracy\n");
    for r in metrics {
        text += &format!(
            "{},{},{},{},{}\n",
            r.step,
            r.epoch,
            r.train_loss,
            r.train_accuracy,
            r.val_accuracy.map(|v| v.to_string()).unwrap_or_default()
        );
    }
    write_atomic(path, text.as_bytes())
}

/// Reads a log written by [`write_metrics_csv`]; errors name the file and line.
pub fn read_metrics_csv(path: &Path) -> Result<Vec<MetricRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let bad = || Error::bad_file(path, format!("line {}: expected step,epoch,train_loss,train_accuracy,val_accuracy, got '{line}'", i + 1));
            if f.len() != 5 {
                return Err(bad());
            }
            Ok(MetricRow {
                step: f[0].parse().map_err(|_| bad())?,
                epoch: f[1].parse().map_err(|_| bad())?,
                train_loss: f[2].parse().map_err(|_| bad())?,
                train_accuracy: f[3].parse().map_err(|_| bad())?,
                val_accuracy: if f[4].is_empty() { None } else { Some(f[4].parse().map_err(|_| bad())?) },
            })
        })
        .collect()
}

/// The JSON half of the resumable training state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    step: usize,
    adam_step: i32,
    variant: String,
    image_size: i64,
    config: TrainConfig,
    /// Older states embedded the log; now it is `metrics.csv` beside them (rows up to `step`).
    #[serde(default, skip_serializing)]
    metrics: Vec<MetricRow>,
    milestones: Vec<Milestone>,
}

/// Writes `dir/metrics.csv` (the log so far), then `dir/last.safetensors` (weights, Adam
/// moments and the state itself as a `state.json` byte tensor: one atomic file holds all that
/// a resume needs, so a kill between two files cannot leave them inconsistent), then
/// `dir/last.json` (the same state, for people and older readers). Log rows past the state's
/// step (a kill after the log was written) are dropped on resume.
fn save_state(
    dir: &Path,
    model: &SclModel,
    opt: &AdamW,
    names: &[String],
    step: usize,
    run: &TrainRun,
    cfg: &TrainConfig,
) -> Result<()> {
    let mut tensors = Params::new();
    for (n, t) in model.params.iter() {
        tensors.insert(n, t.detach());
    }
    for (name, (m, v)) in names.iter().zip(&opt.moments) {
        tensors.insert(format!("adam.m.{name}"), m.shallow_clone());
        tensors.insert(format!("adam.v.{name}"), v.shallow_clone());
    }
    tensors.insert("state.step", Tensor::from(step as i64));
    write_metrics_csv(&dir.join("metrics.csv"), &run.metrics)?;
    let state = TrainState {
        step,
        adam_step: opt.step,
        variant: model.variant_name().into(),
        image_size: model.image_size(),
        config: cfg.clone(),
        metrics: Vec::new(),
        milestones: run.milestones.clone(),
    };
    let json = serde_json::to_vec(&state)?;
    tensors.insert("state.json", Tensor::from_slice(&json));
    crate::checkpoint::write_safetensors_atomic(&dir.join("last.safetensors"), &tensors)?;
    write_atomic(&dir.join("last.json"), &json)
}

/// Restores weights, Adam moments and the log from `dir/last.*`; returns the step reached.
fn load_state(
    dir: &Path,
    model: &mut SclModel,
    opt: &mut AdamW,
    names: &[String],
    run: &mut TrainRun,
) -> Result<usize> {
    let weights_path = dir.join("last.safetensors");
    let tensors = crate::checkpoint::read_safetensors(&weights_path)?;
    // The state inside the weights file (written with them, atomically) wins; older state
    // files have it only in last.json.
    let (json_path, json) = match tensors.get("state.json") {
        Ok(bytes) => (weights_path.clone(), Vec::<u8>::try_from(bytes)?),
        Err(_) => {
            let path = dir.join("last.json");
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            (path, bytes)
        }
    };
    let state: TrainState = serde_json::from_slice(&json)
        .map_err(|e| Error::bad_file(&json_path, format!("resumable state: {e}")))?;
    // A kill between the two writes of `save_state` leaves last.json one state behind the
    // weights file; a run resumed at its last step then takes no step that would rewrite it.
    let readable = dir.join("last.json");
    if json_path == weights_path && std::fs::read(&readable).ok().as_deref() != Some(&json[..]) {
        write_atomic(&readable, &json)?;
    }
    if state.variant != model.variant_name() || state.image_size != model.image_size() {
        return Err(Error::bad_file(
            &json_path,
            format!(
                "state of a {} model at {} px cannot resume a {} model at {} px",
                state.variant,
                state.image_size,
                model.variant_name(),
                model.image_size()
            ),
        ));
    }
    if let Ok(saved) = tensors.get("state.step") {
        let saved = saved.int64_value(&[]);
        if saved != state.step as i64 {
            return Err(Error::bad_file(
                &weights_path,
                format!(
                    "holds the state of step {saved} but last.json names step {}: the save was \
                     interrupted; restore both from the last commit",
                    state.step
                ),
            ));
        }
    }
    let _guard = tch::no_grad_guard();
    for (name, t) in model.params.iter() {
        let mut t = t.shallow_clone();
        t.copy_(tensors.get(name)?);
    }
    for (name, (m, v)) in names.iter().zip(&mut opt.moments) {
        m.copy_(tensors.get(&format!("adam.m.{name}"))?);
        v.copy_(tensors.get(&format!("adam.v.{name}"))?);
    }
    opt.step = state.adam_step;
    run.metrics = if state.metrics.is_empty() {
        let mut rows = read_metrics_csv(&dir.join("metrics.csv"))?;
        rows.retain(|r| r.step <= state.step);
        rows
    } else {
        state.metrics
    };
    if run.metrics.last().map(|r| r.step) != Some(state.step) {
        return Err(Error::bad_file(
            dir.join("metrics.csv"),
            format!("the log does not reach step {} of last.json", state.step),
        ));
    }
    run.milestones = state.milestones;
    Ok(state.step)
}

/// One row of the training log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRow {
    /// Optimiser step (from 1).
    pub step: usize,
    /// Epoch of the step's first problem (from 0).
    pub epoch: usize,
    /// Cross-entropy of the step's batch.
    pub train_loss: f64,
    /// Accuracy on the step's batch (BatchNorm in train mode).
    pub train_accuracy: f64,
    /// Only on validation steps.
    pub val_accuracy: Option<f64>,
}

/// A milestone checkpoint that was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Milestone {
    /// The level (fraction) that was reached.
    pub level: f64,
    /// The validation accuracy measured at that step (names the file).
    pub measured_val_accuracy: f64,
    /// The step.
    pub step: usize,
    /// The checkpoint written, when training had an output folder.
    pub path: Option<PathBuf>,
}

impl std::fmt::Display for Milestone {
    /// `level 70 %: measured 70.0 % at step 6000 → model_ckpts/study/….safetensors`, the
    /// path as committed outputs show it ([`crate::files::shown_path`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (level, measured) = (100.0 * self.level, 100.0 * self.measured_val_accuracy);
        write!(
            f,
            "level {level:.0} %: measured {measured:.1} % at step {}",
            self.step
        )?;
        match &self.path {
            Some(path) => write!(f, " → {}", crate::files::shown_path(path)),
            None => write!(f, " (not saved)"),
        }
    }
}

/// What a training run produced (its inline display, the training curves, is drawn by
/// [`crate::plot`]).
#[derive(Debug)]
pub struct TrainRun {
    /// The trained model.
    pub model: SclModel,
    /// One row per step.
    pub metrics: Vec<MetricRow>,
    /// Milestone checkpoints written, in the order they were reached.
    pub milestones: Vec<Milestone>,
}

impl TrainRun {
    /// The training log as a table (step, epoch, loss, accuracies).
    pub fn metrics_table(&self) -> Result<Table> {
        let m = &self.metrics;
        let df = df!(
            "step" => m.iter().map(|r| r.step as u64).collect::<Vec<_>>(),
            "epoch" => m.iter().map(|r| r.epoch as u64).collect::<Vec<_>>(),
            "train_loss" => m.iter().map(|r| r.train_loss).collect::<Vec<_>>(),
            "train_accuracy" => m.iter().map(|r| r.train_accuracy).collect::<Vec<_>>(),
            "val_accuracy" => m.iter().map(|r| r.val_accuracy).collect::<Vec<_>>()
        )?;
        Ok(Table::new(df))
    }
}

/// Training throughput: `steps` AdamW steps on random panels, each timed, after two warm-up
/// steps (what `avr bench train` reports) — through the same loop as [`train`].
pub fn bench_steps(
    model: SclModel,
    batch: usize,
    steps: usize,
    precision: Precision,
) -> Result<crate::bench::StepTimes> {
    let device = model.device();
    precision.check_native(device)?;
    let s = model.image_size();
    let cfg = TrainConfig::default();
    let weights = model.trainable_leaves()?;
    let mut opt = AdamW::new(&weights);
    let x = Tensor::rand([batch as i64, 16, s, s], (Kind::Float, device));
    let y = Tensor::randint(8, [batch as i64], (Kind::Int64, device));
    let mut task = crate::bench::Timed::new(batch, 2, |_| {
        in_precision(precision, || model.logits(&x, BnMode::Train))
            .map(|l| l.cross_entropy_for_logits(&y))
    });
    optimise(
        &mut task,
        &weights,
        &mut opt,
        &cfg.adam(),
        1..=steps.max(1) + 2,
    )?;
    Ok(task.times())
}

/// SCL training as a [`TrainStep`]: batches from the loader, validation, milestones and the
/// resumable state after each update.
struct SclTraining<'a> {
    model: &'a SclModel,
    names: Vec<String>,
    loader: Loader,
    val: &'a AvrDataset,
    cfg: &'a TrainConfig,
    out_dir: Option<&'a Path>,
    run: TrainRun,
    train_len: usize,
    start: usize,
    clock: std::time::Instant,
    /// This step's logits and targets, kept for the batch accuracy.
    last: Option<(Tensor, Tensor)>,
    /// Fixed training problems that re-estimate the BatchNorm statistics before validation.
    calibration: AvrDataset,
}

impl TrainStep for SclTraining<'_> {
    fn loss(&mut self, step: usize) -> Result<Tensor> {
        let batch: Batch = self.loader.next().ok_or_else(|| {
            Error::DataExhausted(format!("training data ran out before step {step}"))
        })??;
        let logits = in_precision(self.cfg.precision, || {
            self.model.logits(&batch.images, BnMode::Train)
        })?;
        let loss = logits.cross_entropy_for_logits(&batch.targets);
        self.last = Some((logits, batch.targets));
        Ok(loss)
    }

    fn after_update(&mut self, step: usize, loss: f64, opt: &AdamW) -> Result<Flow> {
        let cfg = self.cfg;
        let accuracy = match self.last.take() {
            Some((logits, targets)) => tch::no_grad(|| batch_accuracy(&logits, &targets)),
            None => f64::NAN,
        };
        let batch_size = cfg.batch_size.min(self.train_len).max(1);
        // Epoch of this batch's first problem, from its position in the planned stream.
        let epoch = (step - 1) * batch_size / self.train_len;
        let mut row = MetricRow {
            step,
            epoch,
            train_loss: loss,
            train_accuracy: accuracy,
            val_accuracy: None,
        };
        if step % cfg.val_every.max(1) == 0 || step == cfg.steps {
            let val_accuracy = self.validate_and_checkpoint(step)?;
            row.val_accuracy = Some(val_accuracy);
            let per_step = self.clock.elapsed().as_secs_f64() / (step - self.start) as f64;
            progress(&format!(
                "step {step:>6}/{} epoch {epoch:>3} loss {loss:.4} train {accuracy:.3} val {val_accuracy:.3} · ETA {:.0} s",
                cfg.steps,
                per_step * (cfg.steps - step) as f64
            ));
        }
        let reached = row
            .val_accuracy
            .zip(cfg.stop_at_accuracy)
            .is_some_and(|(v, t)| v >= t);
        self.run.metrics.push(row);
        if let Some(dir) = self.out_dir {
            if step % cfg.state_every.max(1) == 0 || step == cfg.steps || reached {
                save_state(dir, self.model, opt, &self.names, step, &self.run, cfg)?;
            }
        }
        Ok(if reached { Flow::Stop } else { Flow::Continue })
    }
}

impl SclTraining<'_> {
    /// Validation accuracy at `step`; writes a milestone checkpoint for every level first reached.
    fn validate_and_checkpoint(&mut self, step: usize) -> Result<f64> {
        recalibrate_batch_norm(self.model, &self.calibration, self.cfg.batch_size.max(1))?;
        let opts = EvalOptions {
            batch_size: self.cfg.batch_size.max(1),
            device: self.model.device(),
        };
        let accuracy = evaluate(self.model, self.val, &opts)?.accuracy;
        for &level in &self.cfg.milestones {
            if accuracy >= level && !self.run.milestones.iter().any(|m| m.level == level) {
                let path = match self.out_dir {
                    Some(dir) => Some(save_milestone(
                        self.model,
                        dir,
                        accuracy,
                        self.val.len(),
                        step,
                        self.cfg,
                    )?),
                    None => None,
                };
                self.run.milestones.push(Milestone {
                    level,
                    measured_val_accuracy: accuracy,
                    step,
                    path,
                });
            }
        }
        Ok(accuracy)
    }
}

/// Re-estimates every BatchNorm's running statistics at the current weights as the plain mean
/// of their batch statistics over `data` (PyTorch's cumulative average, `momentum=None`): each
/// batch passes through the model in train mode without gradients, and the momentum update it
/// makes is turned into a running mean. `data` is a fixed set, so the result depends on the
/// weights alone (a resumed run recomputes the same statistics).
pub fn recalibrate_batch_norm(
    model: &SclModel,
    data: &AvrDataset,
    batch_size: usize,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let buffers: Vec<Tensor> = model
        .params
        .iter()
        .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
        .map(|(_, t)| t.shallow_clone())
        .collect();
    let indices: Vec<usize> = (0..data.len()).collect();
    for (k, chunk) in indices.chunks(batch_size).enumerate() {
        let before: Vec<Tensor> = buffers.iter().map(Tensor::copy).collect();
        let batch = data.batch(chunk, model.batch_options(), model.device())?;
        // Only the running statistics this pass updates matter, not its output.
        let _logits = model.logits(&batch.images, BnMode::Train)?;
        let m = crate::model::layers::BN_MOMENTUM;
        for (buffer, old) in buffers.iter().zip(&before) {
            // The pass wrote (1 − m)·old + m·b; recover b and fold it into the mean so far.
            let stat = (buffer - old * (1.0 - m)) / m;
            let mean = old + (stat - old) / (k + 1) as f64;
            buffer.shallow_clone().copy_(&mean);
        }
    }
    Ok(())
}

/// Fraction of rows whose first maximal logit is the target.
fn batch_accuracy(logits: &Tensor, targets: &Tensor) -> f64 {
    logits
        .argmax(-1, false)
        .eq_tensor(targets)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

/// Trains `model` on `train`, validating on `val`; milestone checkpoints, `metrics.csv`-ready
/// logs and the resumable state go to `out_dir` when given. Panels are prepared the model's way
/// ([`SclModel::batch_options`]).
pub fn train(
    model: SclModel,
    train: &AvrDataset,
    val: &AvrDataset,
    cfg: &TrainConfig,
    out_dir: Option<&Path>,
) -> Result<TrainRun> {
    if train.is_empty() || val.is_empty() {
        return Err(Error::NotEnough(
            "training needs non-empty train and validation sets".into(),
        ));
    }
    cfg.precision.check_native(model.device())?;
    let device = model.device();
    let names: Vec<String> = model
        .param_specs()
        .into_iter()
        .filter(|s| s.trainable)
        .map(|s| s.name)
        .collect();
    let weights = model.trainable_leaves()?;
    let mut opt = AdamW::new(&weights);
    let mut model = model;
    let mut run = TrainRun {
        model: model.clone(),
        metrics: Vec::new(),
        milestones: Vec::new(),
    };
    let start = match out_dir {
        Some(dir) if cfg.resume && dir.join("last.safetensors").exists() => {
            let step = load_state(dir, &mut model, &mut opt, &names, &mut run)?;
            progress(&format!("resuming {} from step {step}", dir.display()));
            progress_done();
            step
        }
        _ => 0,
    };
    // A run that stopped at its target accuracy is finished: resuming it takes no step.
    let reached = |r: &MetricRow| {
        r.val_accuracy
            .zip(cfg.stop_at_accuracy)
            .is_some_and(|(v, t)| v >= t)
    };
    let end = if run.metrics.last().is_some_and(reached) {
        start
    } else {
        cfg.steps
    };
    // The data order is a pure function of (seed, step): replaying it restores it exactly.
    let mut order = EpochOrder::new(cfg.seed, train.len(), true);
    let batch_size = cfg.batch_size.min(train.len()).max(1);
    (0..start).for_each(|_| drop(order.next_batch(batch_size)));
    let loader_cfg = LoaderConfig {
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        options: model.batch_options(),
        ..Default::default()
    };
    let loader = Loader::from_order(
        train,
        &mut order,
        end.saturating_sub(start),
        &loader_cfg,
        device,
    );
    let mut task = SclTraining {
        model: &model,
        names,
        loader,
        val,
        cfg,
        out_dir,
        run,
        train_len: train.len(),
        start,
        clock: std::time::Instant::now(),
        last: None,
        // `spread(0)` would keep everything: no batches means an empty calibration set.
        calibration: match cfg.bn_recalibration_batches {
            0 => train.select(&[], None),
            n => train.spread(n * batch_size),
        },
    };
    optimise(&mut task, &weights, &mut opt, &cfg.adam(), start + 1..=end)?;
    progress_done();
    let mut run = task.run;
    for w in &weights {
        let _ = w.shallow_clone().set_requires_grad(false);
    }
    run.model = model;
    Ok(run)
}

/// Writes `<dir>/scl_<variant>_val<acc>.safetensors` + `.json` (the full architecture, the
/// config, step and measured accuracy with its n), both atomically; the name comes from the
/// measured accuracy.
pub fn save_milestone(
    model: &SclModel,
    dir: &Path,
    accuracy: f64,
    val_problems: usize,
    step: usize,
    cfg: &TrainConfig,
) -> Result<PathBuf> {
    let sidecar = CheckpointSidecar {
        variant: model.variant_name().into(),
        image_size: model.image_size(),
        model: Some(model.variant.clone()),
        transpose_panels: model.transpose_panels,
        step,
        measured_val_accuracy: accuracy,
        val_problems,
        train_config: serde_json::to_value(cfg).map_err(Error::from)?,
        code_version: env!("CARGO_PKG_VERSION").into(),
        evaluations: Vec::new(),
        weights_crc32: None,
    };
    let stem = format!("scl_{}_val{:.1}", model.variant_name(), 100.0 * accuracy);
    crate::checkpoint::save_checkpoint(model, dir, &stem, &sidecar)
}

#[cfg(test)]
mod milestone_tests {
    use super::*;

    #[test]
    fn a_milestone_reads_as_a_sentence_with_its_path_inside_the_crate() {
        let root = crate::files::crate_root();
        let path = root.join("model_ckpts/study/scl_official_val70.0.safetensors");
        let m = Milestone {
            level: 0.7,
            measured_val_accuracy: 0.70048,
            step: 6000,
            path: Some(path),
        };
        assert_eq!(
            m.to_string(),
            "level 70 %: measured 70.0 % at step 6000 → \
             model_ckpts/study/scl_official_val70.0.safetensors"
        );
        let unsaved = Milestone { path: None, ..m };
        assert!(unsaved.to_string().ends_with("(not saved)"));
    }
}
