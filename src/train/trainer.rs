//! Training SCL: AdamW with decoupled weight decay, optional gradient clipping, gradients zeroed
//! every step (the study forgot), per-epoch seeded shuffling, BatchNorm in train mode for steps
//! and eval mode for validation, and milestone checkpoints named from the *measured* validation
//! accuracy (the study named them by list position).

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::eval::{evaluate, EvalOptions};
use crate::checkpoint::write_atomic;
use crate::data::dataset::BatchOptions;
use crate::data::loader::{EpochOrder, Loader, LoaderConfig};
use crate::data::AvrDataset;
use crate::display::Table;
use crate::model::{BnMode, Params, SclModel};
use crate::plot::{line_plot, Line};
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
    /// How problems become tensors (transpose, resize).
    pub batch: BatchOptions,
    /// Write the resumable state (`<out>/last.safetensors` + `last.json`: weights, Adam moments,
    /// step, log) every this many steps (default 50; needs an output folder).
    pub state_every: usize,
    /// Continue from `<out>/last.*` if present (default false).
    pub resume: bool,
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
            batch: BatchOptions::default(),
            state_every: 50,
            resume: false,
        }
    }
}

/// Loss, and train / validation accuracy, against step (two figures side by side).
pub fn training_curves(metrics: &[MetricRow]) -> Result<crate::display::Figure> {
    let steps: Vec<f64> = metrics.iter().map(|r| r.step as f64).collect();
    let loss: Vec<f64> = metrics.iter().map(|r| r.train_loss).collect();
    let train_acc: Vec<f64> = metrics.iter().map(|r| r.train_accuracy).collect();
    let (val_steps, val_acc): (Vec<f64>, Vec<f64>) = metrics
        .iter()
        .filter_map(|r| r.val_accuracy.map(|v| (r.step as f64, v)))
        .unzip();
    let loss_fig = line_plot(
        "Training loss",
        "step",
        "cross-entropy",
        &[Line::new("train", &steps, &loss)],
    )?;
    let acc_fig = line_plot(
        "Accuracy",
        "step",
        "accuracy",
        &[
            Line::new("train (batch)", &steps, &train_acc),
            Line::new("validation", &val_steps, &val_acc),
        ],
    )?;
    Ok(crate::display::Figure::side_by_side(
        "Training curves",
        &[loss_fig, acc_fig],
    ))
}

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
    metrics: Vec<MetricRow>,
    milestones: Vec<Milestone>,
}

fn variant_name(model: &SclModel) -> &'static str {
    match &model.variant {
        crate::model::SclVariant::Seed(_) => "seed",
        crate::model::SclVariant::Official(_) => "official",
    }
}

/// Writes `dir/last.safetensors` (weights and Adam moments) and `dir/last.json`, both atomically.
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
    crate::checkpoint::write_safetensors_atomic(&dir.join("last.safetensors"), &tensors)?;
    let state = TrainState {
        step,
        adam_step: opt.step,
        variant: variant_name(model).into(),
        image_size: model.image_size(),
        config: cfg.clone(),
        metrics: run.metrics.clone(),
        milestones: run.milestones.clone(),
    };
    write_atomic(
        &dir.join("last.json"),
        &serde_json::to_vec(&state).map_err(|e| Error::Config(e.to_string()))?,
    )
}

/// Restores weights, Adam moments and the log from `dir/last.*`; returns the step reached.
fn load_state(
    dir: &Path,
    model: &mut SclModel,
    opt: &mut AdamW,
    names: &[String],
    run: &mut TrainRun,
) -> Result<usize> {
    let json_path = dir.join("last.json");
    let state: TrainState =
        serde_json::from_slice(&std::fs::read(&json_path).map_err(|e| Error::io(&json_path, e))?)
            .map_err(|e| Error::bad_file(&json_path, e.to_string()))?;
    if state.variant != variant_name(model) || state.image_size != model.image_size() {
        return Err(Error::bad_file(
            &json_path,
            format!(
                "state of a {} model at {} px cannot resume a {} model at {} px",
                state.variant,
                state.image_size,
                variant_name(model),
                model.image_size()
            ),
        ));
    }
    let tensors = crate::checkpoint::read_safetensors(&dir.join("last.safetensors"))?;
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
    run.metrics = state.metrics;
    run.milestones = state.milestones;
    Ok(state.step)
}

/// One row of the training log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRow {
    pub step: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// Only on validation steps.
    pub val_accuracy: Option<f64>,
}

/// A milestone checkpoint that was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Milestone {
    pub level: f64,
    pub measured_val_accuracy: f64,
    pub step: usize,
    pub path: Option<PathBuf>,
}

/// What a training run produced.
#[derive(Debug)]
pub struct TrainRun {
    pub model: SclModel,
    pub metrics: Vec<MetricRow>,
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

    /// Training curves: loss (left) is on its own scale, so two figures side by side in one
    /// HTML block: loss vs step, and train / validation accuracy vs step.
    pub fn curves(&self) -> Result<crate::display::Figure> {
        training_curves(&self.metrics)
    }

    /// Inline display: the training curves.
    pub fn evcxr_display(&self) {
        match self.curves() {
            Ok(f) => f.evcxr_display(),
            Err(e) => println!("{self:?} (curves unavailable: {e})"),
        }
    }
}

/// Adam moments per trainable tensor.
/// Adam with decoupled weight decay (AdamW); plain Adam when the decay is 0.
pub(crate) struct AdamW {
    pub(crate) moments: Vec<(Tensor, Tensor)>,
    pub(crate) step: i32,
}

impl AdamW {
    pub(crate) fn new(params: &[Tensor]) -> Self {
        AdamW {
            moments: params
                .iter()
                .map(|p| (p.zeros_like(), p.zeros_like()))
                .collect(),
            step: 0,
        }
    }

    fn update(&mut self, params: &[Tensor], cfg: &TrainConfig) {
        self.step_with(params, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps);
    }

    /// One update of `params` from their gradients.
    pub(crate) fn step_with(
        &mut self,
        params: &[Tensor],
        lr: f64,
        weight_decay: f64,
        betas: (f64, f64),
        eps: f64,
    ) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = betas;
        let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
        for (p, (m, v)) in params.iter().zip(&mut self.moments) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
            let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
            let mut p = p.shallow_clone();
            if weight_decay > 0.0 {
                let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
            }
            let step = (&*m / c1) / ((&*v / c2).sqrt() + eps) * lr;
            let _ = p.g_sub_(&step);
        }
    }
}

/// Training throughput: `steps` AdamW steps on random panels, timed one by one after two warm-up
/// steps (what `avr bench train` reports).
pub fn bench_steps(model: SclModel, batch: usize, steps: usize) -> Result<crate::bench::StepTimes> {
    let device = model
        .params
        .iter()
        .next()
        .map(|(_, t)| t.device())
        .unwrap_or(tch::Device::Cpu);
    let s = model.image_size();
    let cfg = TrainConfig::default();
    let trainable: Vec<String> = model
        .param_specs()
        .into_iter()
        .filter(|p| p.trainable)
        .map(|p| p.name)
        .collect();
    let weights: Vec<Tensor> = trainable
        .iter()
        .map(|n| model.params.get(n).map(|t| t.set_requires_grad(true)))
        .collect::<Result<_>>()?;
    let mut opt = AdamW::new(&weights);
    let x = Tensor::rand([batch as i64, 16, s, s], (Kind::Float, device));
    let y = Tensor::randint(8, [batch as i64], (Kind::Int64, device));
    let one_step = || -> Result<()> {
        zero_grads(&weights);
        model
            .logits(&x, BnMode::Train)?
            .cross_entropy_for_logits(&y)
            .backward();
        opt.update(&weights, &cfg);
        Ok(())
    };
    crate::bench::StepTimes::measure(batch, 2, steps, one_step)
}

/// Trains `model` on `train`, validating on `val`; milestone checkpoints go to `out_dir` when given.
pub fn train(
    model: SclModel,
    train: &AvrDataset,
    val: &AvrDataset,
    cfg: &TrainConfig,
    out_dir: Option<&Path>,
) -> Result<TrainRun> {
    if train.is_empty() || val.is_empty() {
        return Err(Error::Config(
            "training needs non-empty train and validation sets".into(),
        ));
    }
    let device = model
        .params
        .iter()
        .next()
        .map(|(_, t)| t.device())
        .unwrap_or(tch::Device::Cpu);
    let trainable: Vec<String> = model
        .param_specs()
        .into_iter()
        .filter(|s| s.trainable)
        .map(|s| s.name)
        .collect();
    let weights: Vec<Tensor> = trainable
        .iter()
        .map(|n| model.params.get(n).map(|t| t.set_requires_grad(true)))
        .collect::<Result<_>>()?;
    let mut opt = AdamW::new(&weights);
    let mut run = TrainRun {
        model: model.clone(),
        metrics: Vec::new(),
        milestones: Vec::new(),
    };
    let mut model = model;
    let start = match out_dir {
        Some(dir) if cfg.resume && dir.join("last.json").exists() => {
            let step = load_state(dir, &mut model, &mut opt, &trainable, &mut run)?;
            eprintln!("resuming {} from step {step}", dir.display());
            step
        }
        _ => 0,
    };
    // The data order is a pure function of (seed, step): replaying it restores it exactly.
    let mut order = EpochOrder::new(cfg.seed, train.len(), true);
    let batch_size = cfg.batch_size.min(train.len()).max(1);
    (0..start).for_each(|_| drop(order.next_batch(batch_size)));
    let loader_cfg = LoaderConfig {
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        options: cfg.batch,
        ..Default::default()
    };
    let loader = Loader::from_order(
        train,
        &mut order,
        cfg.steps.saturating_sub(start),
        &loader_cfg,
        device,
    );
    let eval_opts = EvalOptions {
        batch_size: cfg.batch_size.max(1),
        batch: cfg.batch,
        invert_mask: false,
        device,
    };
    let clock = std::time::Instant::now();
    for (step, batch) in (start + 1..=cfg.steps).zip(loader) {
        let batch = batch?;
        // Epoch of this batch's first problem, from its position in the planned stream.
        let epoch = (step - 1) * batch_size / train.len();
        zero_grads(&weights);
        let logits = model.logits(&batch.images, BnMode::Train)?;
        let loss = logits.cross_entropy_for_logits(&batch.targets);
        let loss_value = loss.double_value(&[]);
        if !loss_value.is_finite() {
            return Err(Error::Config(format!("loss became {loss_value} at step {step}; stopped — the last good milestone checkpoint and resumable state are kept")));
        }
        loss.backward();
        if let Some(max_norm) = cfg.clip_grad_norm {
            clip_grad_norm(&weights, max_norm);
        }
        opt.update(&weights, cfg);
        let accuracy = tch::no_grad(|| {
            logits
                .argmax(-1, false)
                .eq_tensor(&batch.targets)
                .to_kind(Kind::Float)
                .mean(Kind::Float)
                .double_value(&[])
        });
        let mut row = MetricRow {
            step,
            epoch,
            train_loss: loss_value,
            train_accuracy: accuracy,
            val_accuracy: None,
        };
        if step % cfg.val_every.max(1) == 0 || step == cfg.steps {
            let report = evaluate(&model, None, val, &eval_opts)?;
            row.val_accuracy = Some(report.accuracy);
            let per_step = clock.elapsed().as_secs_f64() / (step - start) as f64;
            eprintln!("step {step:>6}/{} epoch {epoch:>3} loss {loss_value:.4} train {:.3} val {:.3} · ETA {:.0} s", cfg.steps, accuracy, report.accuracy, per_step * (cfg.steps - step) as f64);
            for &level in &cfg.milestones {
                if report.accuracy >= level && !run.milestones.iter().any(|m| m.level == level) {
                    let path = match out_dir {
                        Some(dir) => {
                            Some(save_checkpoint(&model, dir, report.accuracy, step, cfg)?)
                        }
                        None => None,
                    };
                    run.milestones.push(Milestone {
                        level,
                        measured_val_accuracy: report.accuracy,
                        step,
                        path,
                    });
                }
            }
        }
        run.metrics.push(row);
        if let Some(dir) = out_dir {
            if step % cfg.state_every.max(1) == 0 || step == cfg.steps {
                save_state(dir, &model, &opt, &trainable, step, &run, cfg)?;
            }
        }
    }
    for w in &weights {
        let _ = w.shallow_clone().set_requires_grad(false);
    }
    run.model = model;
    Ok(run)
}

/// Zeroes the gradients of `leaves` (the study forgot this step).
pub(crate) fn zero_grads(leaves: &[Tensor]) {
    for l in leaves {
        let mut g = l.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

pub(crate) fn clip_grad_norm(weights: &[Tensor], max_norm: f64) {
    let _guard = tch::no_grad_guard();
    let total: f64 = weights
        .iter()
        .map(|w| w.grad())
        .filter(|g| g.defined())
        .map(|g| g.square().sum(Kind::Double).double_value(&[]))
        .sum::<f64>()
        .sqrt();
    if total > max_norm {
        for w in weights {
            let mut g = w.grad();
            if g.defined() {
                let _ = g.g_mul_scalar_(max_norm / (total + 1e-6));
            }
        }
    }
}

/// The JSON sidecar written next to every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointSidecar {
    pub variant: String,
    pub image_size: i64,
    pub step: usize,
    pub measured_val_accuracy: f64,
    pub train_config: TrainConfig,
    pub code_version: String,
}

/// Writes `<dir>/scl_<variant>_val<acc>.safetensors` + `.json`, both atomically; the name comes
/// from the measured accuracy.
pub fn save_checkpoint(
    model: &SclModel,
    dir: &Path,
    accuracy: f64,
    step: usize,
    cfg: &TrainConfig,
) -> Result<PathBuf> {
    let variant = variant_name(model);
    let stem = format!("scl_{variant}_val{:.1}", 100.0 * accuracy);
    let weights = dir.join(format!("{stem}.safetensors"));
    crate::checkpoint::write_safetensors_atomic(&weights, &model.params)?;
    let sidecar = CheckpointSidecar {
        variant: variant.into(),
        image_size: model.image_size(),
        step,
        measured_val_accuracy: accuracy,
        train_config: cfg.clone(),
        code_version: env!("CARGO_PKG_VERSION").into(),
    };
    let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&dir.join(format!("{stem}.json")), &json)?;
    Ok(weights)
}

/// Loads one of our checkpoints (`.safetensors` + `.json` sidecar): the architecture comes from
/// the sidecar, and every tensor is checked against it (names, shapes).
pub fn load_checkpoint(path: &Path) -> Result<(SclModel, CheckpointSidecar)> {
    let sidecar: CheckpointSidecar = crate::checkpoint::read_sidecar(path)?;
    let variant = match sidecar.variant.as_str() {
        "official" => crate::model::SclVariant::Official(crate::model::OfficialSclConfig {
            image_size: sidecar.image_size,
            ..Default::default()
        }),
        "seed" => crate::model::SclVariant::Seed(crate::model::SeedSclConfig {
            image_size: sidecar.image_size,
            ..Default::default()
        }),
        other => {
            return Err(Error::bad_file(
                path.with_extension("json"),
                format!("unknown variant '{other}'"),
            ))
        }
    };
    let mut model = SclModel::init(variant, 0, tch::Device::Cpu);
    let params = crate::checkpoint::read_safetensors(path)?;
    let specs = model.param_specs();
    crate::model::check_params(&params, &specs, &path.display().to_string())?;
    let mut ordered = crate::model::Params::new();
    for s in &specs {
        ordered.insert(&s.name, params.get(&s.name)?.shallow_clone());
    }
    model.params = ordered;
    Ok((model, sidecar))
}
