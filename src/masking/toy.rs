//! The masking method's own validation (`../shared/specs/weight-masking.md` §4): the addition /
//! multiplication task (P_specialize: do + and × get their own weights?) and the double-addition
//! task (P_reuse: does the second pair reuse the first pair's weights?), with an FNN at CPU size.
//!
//! Numbers are little-endian digit one-hots; the output is one 10-way softmax per result digit.
//! The FNN is functional (`layers.<i>.weight`, `layers.<i>.bias`), so the same K-batched masking
//! as for SCL applies; biases are not masked (as in the paper).

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::engine::FlatLogits;
use super::overlap::{overlap, Overlap};
use super::Mask;
use crate::display::Table;
use crate::model::layers::linear;
use crate::model::{ParamSpec, Params};
use crate::optim::{optimise, AdamConfig, AdamW, TrainStep};
use crate::rng::Rng;
use crate::Result;

/// Which toy task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToyTask {
    /// `(a op b) mod 10^digits`, op ∈ {+, ×}; input 4·digits·… one-hots + op.
    AddMul,
    /// Two independent sums, one pass per pair with the other pair's inputs zeroed.
    DoubleAdd,
}

/// Toy settings (defaults: the spec's "small" FNN 400-400-200 and its mask hyper-parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToyConfig {
    /// Which task (default [`ToyTask::AddMul`]).
    pub task: ToyTask,
    /// Digits per number (2 in the paper; 1 makes a fast test).
    pub digits: usize,
    /// Hidden layer widths of the ReLU FNN (default `[400, 400, 200]`).
    pub hidden: Vec<i64>,
    /// Problems per step, split evenly over the parts trained on (default 128).
    pub batch_size: usize,
    /// Pre-training steps (Adam, clip 1.0; default 20 000).
    pub train_steps: usize,
    /// Pre-training learning rate (default 1e-3).
    pub train_lr: f64,
    /// Mask-training steps per mask (default 5 000).
    pub mask_steps: usize,
    /// Mask-training learning rate on the logits (default 1e-2).
    pub mask_lr: f64,
    /// β of the paper; the per-logit coefficient is α = β / batch.
    pub beta: f64,
    /// Mask samples K drawn per step, each on its own chunk of the batch (default 4).
    pub samples: usize,
    /// Initial value of every mask logit (default 2, i.e. σ(2) ≈ 0.88 kept at the start).
    pub logit_init: f64,
    /// Seed of initialisation, batches and mask noise (evaluation uses `seed + 1`; default 0).
    pub seed: u64,
}

impl Default for ToyConfig {
    fn default() -> Self {
        ToyConfig {
            task: ToyTask::AddMul,
            digits: 2,
            hidden: vec![400, 400, 200],
            batch_size: 128,
            train_steps: 20_000,
            train_lr: 1e-3,
            mask_steps: 5_000,
            mask_lr: 1e-2,
            beta: 1e-4,
            samples: 4,
            logit_init: 2.0,
            seed: 0,
        }
    }
}

impl ToyConfig {
    /// One digit, a 128-128 FNN, 1,500 pre-training and mask steps, β = 1e-2, seed 3: the
    /// minutes-long CI run whose verdicts still separate the operations.
    pub fn smoke() -> Self {
        ToyConfig {
            digits: 1,
            hidden: vec![128, 128],
            train_steps: 1500,
            mask_steps: 1500,
            beta: 1e-2,
            seed: 3,
            ..Default::default()
        }
    }

    /// The paper's size: two digits, 400-400-200, 20,000 pre-training and mask steps, β = 1e-3.
    pub fn paper() -> Self {
        ToyConfig {
            mask_steps: 20_000,
            beta: 1e-3,
            ..Default::default()
        }
    }

    /// [`Self::smoke`] or [`Self::paper`] for the run size.
    pub fn for_size(size: crate::session::RunSize) -> Self {
        size.pick(Self::smoke(), Self::paper())
    }
}

crate::with_setters!(ToyConfig {
    with_task => task: ToyTask,
    with_digits => digits: usize,
    with_hidden => hidden: Vec<i64>,
    with_train_steps => train_steps: usize,
    with_mask_steps => mask_steps: usize,
    with_beta => beta: f64,
    with_seed => seed: u64,
});

impl ToyConfig {
    fn modulus(&self) -> i64 {
        10i64.pow(self.digits as u32)
    }
    /// Input width: AddMul 2 numbers + op; DoubleAdd 2 pairs of 2 numbers.
    fn d_in(&self) -> i64 {
        let number = 10 * self.digits as i64;
        match self.task {
            ToyTask::AddMul => 2 * number + 2,
            ToyTask::DoubleAdd => 4 * number,
        }
    }
    fn d_out(&self) -> i64 {
        let result = 10 * self.digits as i64;
        match self.task {
            ToyTask::AddMul => result,
            ToyTask::DoubleAdd => 2 * result,
        }
    }
    /// Parameter names and shapes of the FNN.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut dims = vec![self.d_in()];
        dims.extend(&self.hidden);
        dims.push(self.d_out());
        (0..dims.len() - 1)
            .flat_map(|i| {
                [
                    ParamSpec {
                        name: format!("layers.{i}.weight"),
                        shape: vec![dims[i + 1], dims[i]],
                        trainable: true,
                    },
                    ParamSpec {
                        name: format!("layers.{i}.bias"),
                        shape: vec![dims[i + 1]],
                        trainable: true,
                    },
                ]
            })
            .collect()
    }
}

/// Which sub-task a batch holds: AddMul `0` = +, `1` = ×; DoubleAdd `0`/`1` = pair 1/2.
pub type Part = usize;

/// A batch of one sub-task: inputs `(B, d_in)` and target digits `(B, digits)`.
fn batch(cfg: &ToyConfig, part: Part, n: usize, rng: &mut Rng, device: Device) -> (Tensor, Tensor) {
    let m = cfg.modulus();
    let digits = cfg.digits as i64;
    let mut x = vec![0f32; n * cfg.d_in() as usize];
    let mut y = Vec::with_capacity(n * cfg.digits);
    for i in 0..n {
        let row = &mut x[i * cfg.d_in() as usize..(i + 1) * cfg.d_in() as usize];
        let mut put = |slot: i64, value: i64| {
            for d in 0..digits {
                let digit = (value / 10i64.pow(d as u32)) % 10;
                row[((slot * digits + d) * 10 + digit) as usize] = 1.0;
            }
        };
        let (a, b) = (rng.below(m as usize) as i64, rng.below(m as usize) as i64);
        let result = match cfg.task {
            ToyTask::AddMul => {
                put(0, a);
                put(1, b);
                row[(2 * digits * 10) as usize + part] = 1.0;
                if part == 0 {
                    (a + b) % m
                } else {
                    (a * b) % m
                }
            }
            ToyTask::DoubleAdd => {
                put(2 * part as i64, a);
                put(2 * part as i64 + 1, b);
                (a + b) % m
            }
        };
        y.extend((0..digits).map(|d| (result / 10i64.pow(d as u32)) % 10));
    }
    let x = Tensor::from_slice(&x)
        .reshape([n as i64, cfg.d_in()])
        .to_device(device);
    (
        x,
        Tensor::from_slice(&y)
            .reshape([n as i64, digits])
            .to_device(device),
    )
}

/// Digit logits `(B, digits, 10)` of `part` (DoubleAdd reads only that pair's output slot).
fn forward(cfg: &ToyConfig, p: &Params, x: &Tensor, part: Part) -> Result<Tensor> {
    let layers = cfg.hidden.len() + 1;
    let mut h = x.shallow_clone();
    for i in 0..layers {
        h = linear(p, &format!("layers.{i}"), &h)?;
        if i + 1 < layers {
            h = h.relu();
        }
    }
    let n = h.size()[0];
    let per = 10 * cfg.digits as i64;
    let out = match cfg.task {
        ToyTask::AddMul => h,
        ToyTask::DoubleAdd => h.narrow(1, part as i64 * per, per),
    };
    Ok(out.reshape([n, cfg.digits as i64, 10]))
}

fn loss_and_accuracy(logits: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
    let loss = logits
        .reshape([-1, 10])
        .cross_entropy_for_logits(&y.reshape([-1]));
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(y)
        .all_dim(1, false)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    (loss, correct)
}

/// The pre-trained toy network.
#[derive(Debug)]
pub struct ToyModel {
    /// The settings it was trained with (the mask training reuses them).
    pub cfg: ToyConfig,
    /// Frozen (detached) `layers.<i>.weight` `[out, in]` and `layers.<i>.bias` `[out]`.
    pub params: Params,
}

/// Accuracy (all digits right) of `params` on `part`, over `n` fresh problems.
pub fn toy_accuracy(
    cfg: &ToyConfig,
    params: &Params,
    part: Part,
    n: usize,
    seed: u64,
) -> Result<f64> {
    let device = params
        .iter()
        .next()
        .map(|(_, t)| t.device())
        .unwrap_or(Device::Cpu);
    let mut rng = Rng::new(seed).fork(&format!("eval{part}"));
    let (x, y) = batch(cfg, part, n, &mut rng, device);
    let logits = tch::no_grad(|| forward(cfg, params, &x, part))?;
    Ok(loss_and_accuracy(&logits, &y).1.double_value(&[]))
}

/// Pre-training as a [`TrainStep`]: half a batch of each part per step.
struct ToyPretraining<'a> {
    cfg: &'a ToyConfig,
    params: &'a Params,
    rng: Rng,
    device: Device,
}

impl TrainStep for ToyPretraining<'_> {
    fn loss(&mut self, _step: usize) -> Result<Tensor> {
        let mut total = Tensor::zeros([], (Kind::Float, self.device));
        for part in 0..2 {
            let (x, y) = batch(
                self.cfg,
                part,
                self.cfg.batch_size / 2,
                &mut self.rng,
                self.device,
            );
            total += loss_and_accuracy(&forward(self.cfg, self.params, &x, part)?, &y).0;
        }
        Ok(total)
    }
}

/// Toy mask training as a [`TrainStep`]: one K-batched pass per part, each chunk with its own
/// mask sample, plus α·Σ logits.
struct ToyMasking<'a> {
    model: &'a ToyModel,
    parts: &'a [Part],
    logits: &'a FlatLogits,
    specs: &'a [ParamSpec],
    alpha: f64,
    rng: Rng,
    device: Device,
}

impl TrainStep for ToyMasking<'_> {
    fn loss(&mut self, _step: usize) -> Result<Tensor> {
        let cfg = &self.model.cfg;
        let mut total = Tensor::zeros([], (Kind::Float, self.device));
        for &part in self.parts {
            let (x, y) = batch(
                cfg,
                part,
                cfg.batch_size / self.parts.len(),
                &mut self.rng,
                self.device,
            );
            let (p, _) =
                self.logits
                    .sample(self.specs, &self.model.params, cfg.samples as i64, 1.0)?;
            total +=
                loss_and_accuracy(&forward(cfg, &p, &x, part)?, &y).0 / self.parts.len() as f64;
        }
        Ok(total + self.logits.sum() * self.alpha)
    }
}

/// Trains the FNN on every part (both ops / both pairs), Adam, clip 1.0.
pub fn pretrain(cfg: &ToyConfig, device: Device) -> Result<ToyModel> {
    tch::manual_seed(cfg.seed as i64);
    let mut params = Params::new();
    for spec in cfg.param_specs() {
        let t = if spec.shape.len() == 2 {
            let fan_in = spec.shape[1] as f64;
            Tensor::randn(spec.shape.as_slice(), (Kind::Float, device)) * (2.0 / fan_in).sqrt()
        } else {
            Tensor::zeros(spec.shape.as_slice(), (Kind::Float, device))
        };
        params.insert(&spec.name, t.set_requires_grad(true));
    }
    let leaves: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut opt = AdamW::new(&leaves);
    let mut task = ToyPretraining {
        cfg,
        params: &params,
        rng: Rng::new(cfg.seed).fork("pretrain"),
        device,
    };
    let adam = AdamConfig {
        clip_grad_norm: Some(1.0),
        ..AdamConfig::adam(cfg.train_lr)
    };
    optimise(&mut task, &leaves, &mut opt, &adam, 1..=cfg.train_steps)?;
    let mut frozen = Params::new();
    for (n, t) in params.iter() {
        frozen.insert(n, t.detach());
    }
    Ok(ToyModel {
        cfg: cfg.clone(),
        params: frozen,
    })
}

/// Trains a mask (weights only, biases whole) for the parts in `parts` — `[0, 1]` is the
/// control ("full") mask, `[0]` the + / pair-1 mask.
pub fn train_toy_mask(model: &ToyModel, name: &str, parts: &[Part]) -> Result<Mask> {
    let cfg = &model.cfg;
    let device = model
        .params
        .iter()
        .next()
        .map(|(_, t)| t.device())
        .unwrap_or(Device::Cpu);
    let specs = cfg.param_specs();
    let mut initial = Params::new();
    for s in specs.iter().filter(|s| s.shape.len() == 2) {
        initial.insert(
            &s.name,
            Tensor::full(s.shape.as_slice(), cfg.logit_init, (Kind::Float, device)),
        );
    }
    let logits = FlatLogits::new(&initial);
    let leaves = [logits.flat.shallow_clone()];
    let mut opt = AdamW::new(&leaves);
    let alpha = cfg.beta / cfg.batch_size as f64;
    let mut task = ToyMasking {
        model,
        parts,
        logits: &logits,
        specs: &specs,
        alpha,
        rng: Rng::new(cfg.seed).fork(&format!("mask/{name}")),
        device,
    };
    let adam = AdamConfig {
        clip_grad_norm: Some(1.0),
        ..AdamConfig::adam(cfg.mask_lr)
    };
    optimise(&mut task, &leaves, &mut opt, &adam, 1..=cfg.mask_steps)?;
    Ok(Mask::new(name, logits.to_params(), Some(alpha)))
}

/// The full experiment's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct ToyReport {
    /// The task the experiment ran.
    pub task: ToyTask,
    /// Part names (`+`, `×` or `pair 1`, `pair 2`).
    pub parts: [String; 2],
    /// `(setting, accuracy on part 0, accuracy on part 1)`: unmasked, each mask, each inverted mask.
    pub accuracies: Vec<(String, f64, f64)>,
    /// Per-layer `(layer, IoU, IoMin)` between the part-0 and part-1 masks.
    pub layers: Vec<(String, f64, f64)>,
    /// Kept weights per mask.
    pub kept: Vec<(String, i64, i64)>,
    /// The part-0 and part-1 masks.
    #[serde(skip)]
    pub masks: Vec<Mask>,
    /// The half-mask test of the control mask (trained on both parts).
    pub half_mask: HalfMaskReport,
}

/// The half-mask test (weight-masking spec §3.7): the control mask applied to only the first
/// half of the masked tensors (sorted names; "early masked"), or only to the rest ("late
/// masked"); accuracies `(part 0, part 1)`.
#[derive(Debug, Clone, Serialize)]
pub struct HalfMaskReport {
    /// The tensors of the first half (sorted names); the rest form the late half.
    pub early_tensors: Vec<String>,
    /// Accuracies with the control mask on every masked tensor.
    pub full_mask: (f64, f64),
    /// Accuracies with the control mask on the early half only (the rest unmasked).
    pub early_masked: (f64, f64),
    /// Accuracies with the control mask on the late half only (the early half unmasked).
    pub late_masked: (f64, f64),
}

/// Runs the half-mask test of `control` on `model`; the first half is `⌈n/2⌉` (add/mul) or
/// `⌊n/2⌋` (double addition) sorted tensor names, as in the paper's code.
pub fn half_mask_test(model: &ToyModel, control: &Mask, n_eval: usize) -> Result<HalfMaskReport> {
    let cfg = &model.cfg;
    let mut names: Vec<String> = control.logits.names().to_vec();
    names.sort();
    let half = match cfg.task {
        ToyTask::AddMul => names.len().div_ceil(2),
        ToyTask::DoubleAdd => names.len() / 2,
    };
    let early: Vec<String> = names[..half].to_vec();
    let acc = |mask: &Mask| -> Result<(f64, f64)> {
        let p = mask.apply(&model.params, false)?;
        Ok((
            toy_accuracy(cfg, &p, 0, n_eval, cfg.seed + 1)?,
            toy_accuracy(cfg, &p, 1, n_eval, cfg.seed + 1)?,
        ))
    };
    let subset = |keep_early: bool| {
        Mask::new(
            &control.name,
            control
                .logits
                .filter(|n| early.iter().any(|e| e == n) == keep_early),
            control.alpha,
        )
    };
    Ok(HalfMaskReport {
        full_mask: acc(control)?,
        early_masked: acc(&subset(true))?,
        late_masked: acc(&subset(false))?,
        early_tensors: early,
    })
}

impl ToyReport {
    /// The accuracies as a table: one row per setting, accuracy in % on each part.
    pub fn accuracy_table(&self) -> Result<Table> {
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "setting".into(),
                self.accuracies
                    .iter()
                    .map(|r| r.0.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                format!("{} acc %", self.parts[0]).into(),
                self.accuracies
                    .iter()
                    .map(|r| 100.0 * r.1)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                format!("{} acc %", self.parts[1]).into(),
                self.accuracies
                    .iter()
                    .map(|r| 100.0 * r.2)
                    .collect::<Vec<_>>(),
            ),
        ])?;
        Ok(Table::new(df).with_caption(format!(
            "{:?}: accuracy under each mask and inverted mask",
            self.task
        )))
    }

    /// Per-layer IoU and IoMin between the part-0 and part-1 masks, as a table.
    pub fn layer_table(&self) -> Result<Table> {
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "layer".into(),
                self.layers.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "IoU".into(),
                self.layers.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
            Column::new(
                "IoMin".into(),
                self.layers.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
        ])?;
        Ok(Table::new(df).with_caption(format!(
            "{} vs {} masks, per layer",
            self.parts[0], self.parts[1]
        )))
    }

    /// The half-mask test as a table (accuracy in %).
    pub fn half_mask_table(&self) -> Result<Table> {
        let h = &self.half_mask;
        let rows = [
            ("control mask on all tensors", h.full_mask),
            ("early half only", h.early_masked),
            ("late half only", h.late_masked),
        ];
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "setting".into(),
                rows.iter().map(|r| r.0.to_string()).collect::<Vec<_>>(),
            ),
            Column::new(
                format!("{} acc %", self.parts[0]).into(),
                rows.iter().map(|r| 100.0 * r.1 .0).collect::<Vec<_>>(),
            ),
            Column::new(
                format!("{} acc %", self.parts[1]).into(),
                rows.iter().map(|r| 100.0 * r.1 .1).collect::<Vec<_>>(),
            ),
        ])?;
        Ok(Table::new(df).with_caption(format!(
            "half-mask test (early half: {})",
            h.early_tensors.join(", ")
        )))
    }

    /// Inline display in evcxr (`text/html`): the accuracy, layer and half-mask tables.
    pub fn evcxr_display(&self) {
        for t in [
            self.accuracy_table(),
            self.layer_table(),
            self.half_mask_table(),
        ] {
            match t.and_then(|t| t.to_html()) {
                Ok(html) => println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT"),
                Err(e) => println!("{e}"),
            }
        }
    }
}

/// Pre-trains, trains the part-0 and part-1 masks, and measures accuracies and overlaps.
pub fn run_toy(cfg: &ToyConfig, device: Device) -> Result<ToyReport> {
    let model = pretrain(cfg, device)?;
    let parts = match cfg.task {
        ToyTask::AddMul => ["+".to_string(), "×".to_string()],
        ToyTask::DoubleAdd => ["pair 1".to_string(), "pair 2".to_string()],
    };
    let masks = [
        train_toy_mask(&model, &parts[0], &[0])?,
        train_toy_mask(&model, &parts[1], &[1])?,
    ];
    let control = train_toy_mask(&model, "control", &[0, 1])?;
    let n_eval = 2000;
    let acc = |p: &Params| -> Result<(f64, f64)> {
        Ok((
            toy_accuracy(cfg, p, 0, n_eval, cfg.seed + 1)?,
            toy_accuracy(cfg, p, 1, n_eval, cfg.seed + 1)?,
        ))
    };
    let mut accuracies = Vec::new();
    let (a0, a1) = acc(&model.params)?;
    accuracies.push(("unmasked".to_string(), a0, a1));
    for m in &masks {
        for invert in [false, true] {
            let (a0, a1) = acc(&m.apply(&model.params, invert)?)?;
            accuracies.push((
                format!("{}{}", if invert { "¬" } else { "" }, m.name),
                a0,
                a1,
            ));
        }
    }
    let (b0, b1) = (masks[0].binary(), masks[1].binary());
    let (_, iou) = overlap(&b0, &b1, Overlap::IoU)?;
    let (_, iomin) = overlap(&b0, &b1, Overlap::IoMin)?;
    let layers = iou
        .into_iter()
        .zip(iomin)
        .map(|((n, u), (_, m))| (n, u, m))
        .collect();
    let kept = masks
        .iter()
        .map(|m| {
            let (k, t) = m.kept();
            (m.name.clone(), k, t)
        })
        .collect();
    let half_mask = half_mask_test(&model, &control, n_eval)?;
    Ok(ToyReport {
        task: cfg.task,
        parts,
        accuracies,
        layers,
        kept,
        masks: masks.to_vec(),
        half_mask,
    })
}
