//! The toumei graph-modularity experiments (`../shared/specs/graph-modularity.md` §4), on real
//! handwritten digits (scikit-learn's 8×8 set by default, MNIST IDX files when a user has them):
//!
//! - **F**, a digit classifier `SimpleMLP(64, 32, 10)`, and **G**, an adder `SimpleMLP(20, 4, 1)` on
//!   two one-hot digits, trained apart;
//! - **the patched model** `H = G(linear_layer(C(x)))`: `C = SimpleMLP(128, 64, 20)` holds two
//!   copies of F block-diagonally with zero cross blocks; a trainable `Linear(20, 20)` feeds the
//!   frozen G. Trained on the sum of two digits with every patched weight frozen
//!   ([`WeightLock::Model`]) or with only the cross blocks free ([`WeightLock::Param`]);
//! - **the direct model**, the same shape `SimpleMLP(128, 64, 20, 20, 4, 1)` trained end to end;
//! - **modularly varying goals** on the direct model: a fixed goal (`d₁ + d₂`), Kashtan & Alon's
//!   switching between two goals that share their sub-goals (`d₁ + d₂` and `|d₁ − d₂|`), and
//!   toumei's random goals (`a·d₁ + b·d₂`, `a, b ~ U[0, 10)` redrawn every few epochs after a
//!   warm-up, a fresh Adam at each change);
//! - **masks meet graphs**: binary weight masks for "recognise digit 1" and "recognise digit 2"
//!   on the patched `C`, compared with the known blocks and with spectral clusters.
//!
//! Every evaluation reads Q, the n-cut and the layer-shuffle null (z, p) of the weight graph
//! (`graph_modularity`), and the test accuracy. Differences from toumei, on purpose: the patched
//! biases are F's (toumei left them at random init, a bug), and the patched model trains at
//! Adam 1e-3 rather than 1e-4 because the 8×8 set gives ~20 steps an epoch, not ~940.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::chance::ChanceLevel;
use super::graph::{
    graph_modularity, modularity_sweep, spectral_clustering, ModularityConfig, WeightGraph,
};
use super::replicates::{compare_means, MeanComparison};
use crate::data::digits::Digits;
use crate::display::Text;
use crate::masking::engine::FlatLogits;
use crate::model::layers::linear;
use crate::model::mlp::SimpleMlp;
use crate::model::{ParamSpec, Params};
use crate::optim::{optimise, AdamConfig, AdamW, TrainStep};
use crate::rng::Rng;
use crate::session::RunSize;
use crate::{Error, Result};

/// Settings of the toumei experiments (defaults: [`ToumeiConfig::full`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToumeiConfig {
    /// Hidden width of F (default 32: half the 64 pixels, as toumei's 392 is half of 784).
    pub f_hidden: i64,
    /// Whether F's logits pass a ReLU, as toumei's `SimpleMLP` does (default false: on the 8×8
    /// digits the ReLU kills output units and caps F's accuracy; see the notebook).
    pub f_relu_logits: bool,
    /// Whether each F copy's 10 logits pass a softmax before `linear_layer` (default true: G
    /// was trained on one-hot digits, and a linear map of raw logits cannot make one-hots —
    /// without it the patched model solves the sum for ~14 % of test pairs; toumei: none). A
    /// softmax has no weights, so the graph is the same either way.
    pub patch_softmax: bool,
    /// Share of every digit's images held out for testing (default 0.3).
    pub test_fraction: f64,
    /// Images or pairs per step (default 64, toumei's).
    pub batch_size: usize,
    /// Adam learning rate of F, G, the patched and the direct model (default 1e-3).
    pub lr: f64,
    /// Epochs of F over the training images (default 100, toumei's).
    pub f_epochs: usize,
    /// Steps of G on 16 random one-hot pairs each (default 4,000).
    pub g_steps: usize,
    /// Epochs of the patched model on the sum task (default 100, toumei's).
    pub patched_epochs: usize,
    /// Epochs of the direct model on the sum task (default 100).
    pub direct_epochs: usize,
    /// Epochs of the goal runs (default 500, toumei's MVG script).
    pub mvg_epochs: usize,
    /// Epochs on the first goal before goals start to vary (default 90, toumei's).
    pub mvg_warmup: usize,
    /// Epochs between goal changes after the warm-up (default 10, toumei's).
    pub mvg_switch_every: usize,
    /// Epochs between graph readings (default 10; epoch 0 and the last are always read).
    pub eval_every: usize,
    /// Test pairs of every accuracy reading (default 2,000).
    pub test_pairs: usize,
    /// Spectral clustering and null model of every reading (default k 8 — toumei's —, γ 1,
    /// 25 restarts, 20 shuffles).
    pub graph: ModularityConfig,
    /// Mask training for the masks-meet-graphs comparison.
    pub mask: DigitMaskConfig,
}

/// Mask training of "recognise digit i" on the patched `C` (defaults: 1,500 steps, Adam 0.05 on
/// the logits, α 1e-4 per logit, K = 4 samples, logits start at 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DigitMaskConfig {
    /// Steps (default 1,500).
    pub steps: usize,
    /// Adam learning rate on the logits (default 0.05).
    pub lr: f64,
    /// Regulariser coefficient on `Σ logits` (default 1e-4).
    pub alpha: f64,
    /// Mask samples per step (default 4).
    pub samples: i64,
    /// Initial logit (default 2, σ(2) ≈ 0.88 kept).
    pub logit_init: f64,
}

impl Default for DigitMaskConfig {
    fn default() -> Self {
        DigitMaskConfig {
            steps: 1500,
            lr: 0.05,
            alpha: 1e-4,
            samples: 4,
            logit_init: 2.0,
        }
    }
}

impl Default for ToumeiConfig {
    fn default() -> Self {
        Self::full()
    }
}

impl ToumeiConfig {
    /// toumei's schedule on the 8×8 digits: 100 epochs for F, the patched and the direct
    /// model, 500 for the goal runs, a reading every 10 epochs against 20 shuffles.
    pub fn full() -> Self {
        ToumeiConfig {
            f_hidden: 32,
            f_relu_logits: false,
            patch_softmax: true,
            test_fraction: 0.3,
            batch_size: 64,
            lr: 1e-3,
            f_epochs: 100,
            g_steps: 4000,
            patched_epochs: 100,
            direct_epochs: 100,
            mvg_epochs: 500,
            mvg_warmup: 90,
            mvg_switch_every: 10,
            eval_every: 10,
            test_pairs: 2000,
            graph: ModularityConfig {
                shuffles: 20,
                ..ModularityConfig::default()
            },
            mask: DigitMaskConfig::default(),
        }
    }

    /// The seconds-long CI size: short schedules, 5 shuffles, 5 restarts.
    pub fn smoke() -> Self {
        ToumeiConfig {
            f_epochs: 30,
            g_steps: 1500,
            patched_epochs: 30,
            direct_epochs: 30,
            mvg_epochs: 60,
            mvg_warmup: 20,
            mvg_switch_every: 10,
            eval_every: 10,
            test_pairs: 500,
            graph: ModularityConfig {
                shuffles: 5,
                restarts: 5,
                ..ModularityConfig::default()
            },
            mask: DigitMaskConfig {
                steps: 300,
                ..DigitMaskConfig::default()
            },
            ..Self::full()
        }
    }

    /// [`Self::smoke`] or [`Self::full`] for the run size.
    pub fn for_size(size: RunSize) -> Self {
        size.pick(Self::smoke(), Self::full())
    }

    fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("toumei settings: {m}")));
        if self.batch_size < 4 || self.batch_size % self.mask.samples.max(1) as usize != 0 {
            return bad("batch_size must be ≥ 4 and a multiple of mask.samples");
        }
        if self.eval_every == 0 || self.mvg_switch_every == 0 {
            return bad("eval_every and mvg_switch_every must be ≥ 1");
        }
        if self.f_hidden < 1 || self.test_pairs == 0 {
            return bad("f_hidden and test_pairs must be ≥ 1");
        }
        Ok(())
    }
}

crate::with_setters!(ToumeiConfig {
    with_f_epochs => f_epochs: usize,
    with_patched_epochs => patched_epochs: usize,
    with_direct_epochs => direct_epochs: usize,
    with_mvg_epochs => mvg_epochs: usize,
    with_eval_every => eval_every: usize,
});

/// Which patched weights stay frozen (toumei's `weight_lock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightLock {
    /// Every patched weight frozen (cross blocks stay 0); only `linear_layer` learns.
    Model,
    /// Only the cross blocks (initialised to 0) and `linear_layer` learn.
    Param,
}

/// The training goal of a direct model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// `d₁ + d₂` throughout.
    Fixed,
    /// Kashtan & Alon's modularly varying goal: `d₁ + d₂`, then after the warm-up alternately
    /// `|d₁ − d₂|` and `d₁ + d₂` (the same sub-goals, another combination), switched every
    /// `mvg_switch_every` epochs.
    Switching,
    /// toumei's random goal: `d₁ + d₂`, then `a·d₁ + b·d₂` with `a, b ~ U[0, 10)` redrawn every
    /// `mvg_switch_every` epochs after the warm-up.
    Random,
}

/// Which model a run trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// The patched `H = G(linear_layer(C))`.
    Patched(WeightLock),
    /// `SimpleMLP(128, 64, 20, 20, 4, 1)` trained end to end for `Goal`.
    Direct(Goal),
}

impl Model {
    /// A short label for tables and legends.
    pub fn label(&self) -> String {
        match self {
            Model::Patched(WeightLock::Model) => "patched (all frozen)".into(),
            Model::Patched(WeightLock::Param) => "patched (cross free)".into(),
            Model::Direct(Goal::Fixed) => "direct".into(),
            Model::Direct(Goal::Switching) => "switching goals".into(),
            Model::Direct(Goal::Random) => "random goals".into(),
        }
    }
}

/// One goal: `a·d₁ + b·d₂`, or `|d₁ − d₂|`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Target {
    /// `a·d₁ + b·d₂`.
    Weighted(f64, f64),
    /// `|d₁ − d₂|`.
    Difference,
}

impl Target {
    fn of(&self, first: &Tensor, second: &Tensor) -> Tensor {
        let (a, b) = (first.to_kind(Kind::Float), second.to_kind(Kind::Float));
        match *self {
            Target::Weighted(x, y) => (a * x + b * y).unsqueeze(1),
            Target::Difference => (a - b).abs().unsqueeze(1),
        }
    }
}

/// The goal of every epoch `1..=epochs` (index 0 = epoch 1), and whether a new goal starts there.
pub fn goal_schedule(goal: Goal, cfg: &ToumeiConfig, rng: &mut Rng) -> Vec<(Target, bool)> {
    let sum = Target::Weighted(1.0, 1.0);
    let mut current = sum;
    (1..=cfg.mvg_epochs)
        .map(|epoch| {
            let changes =
                epoch > cfg.mvg_warmup && (epoch - cfg.mvg_warmup - 1) % cfg.mvg_switch_every == 0;
            if changes {
                current = match (goal, current) {
                    (Goal::Fixed, _) => sum,
                    (Goal::Switching, Target::Difference) => sum,
                    (Goal::Switching, _) => Target::Difference,
                    (Goal::Random, _) => {
                        Target::Weighted(10.0 * rng.uniform(), 10.0 * rng.uniform())
                    }
                };
            }
            (current, changes && goal != Goal::Fixed)
        })
        .collect()
}

/// One evaluation of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphReading {
    /// Epochs trained (0 = before training).
    pub epoch: usize,
    /// Share of test pairs (images, for F) whose output is within 0.5 of the current goal.
    pub accuracy: f64,
    /// Newman's Q of the spectral partition.
    pub q: f64,
    /// Normalised cut of the same partition.
    pub ncut: f64,
    /// Mean and population sd of the shuffled networks' Q.
    pub q_null: (f64, f64),
    /// z-score of Q against the shuffles.
    pub z: f64,
    /// Right-tail p of Q against the shuffles.
    pub p: f64,
    /// Left-tail p of the n-cut against the same shuffles.
    pub ncut_p: f64,
}

/// One model trained with one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToumeiRun {
    /// What was trained.
    pub model: Model,
    /// The seed (data split, initialisation, batches, clustering).
    pub seed: u64,
    /// Test accuracy of F and of G (patched runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_accuracy: Option<(f64, f64)>,
    /// Readings at epoch 0, every `eval_every` epochs and the last.
    pub readings: Vec<GraphReading>,
    /// Layer widths of the weight graph, input first.
    pub layer_sizes: Vec<usize>,
    /// The trained weights and biases under their PyTorch names.
    #[serde(skip)]
    pub params: Params,
}

impl ToumeiRun {
    /// The last reading.
    pub fn last(&self) -> &GraphReading {
        self.readings
            .last()
            .expect("a run has at least its epoch-0 reading")
    }

    /// The weight graph of the trained model.
    pub fn graph(&self) -> Result<WeightGraph> {
        weight_graph(&self.model, &self.params)
    }
}

/// The digits of one seed: a stratified train/test split of scikit-learn's 8×8 set.
#[derive(Debug, Clone)]
pub struct DigitTask {
    /// Training images.
    pub train: Digits,
    /// Held-out images.
    pub test: Digits,
}

impl DigitTask {
    /// Splits `digits` by `seed`.
    pub fn new(digits: &Digits, cfg: &ToumeiConfig, seed: u64) -> Result<Self> {
        let (train, test) = digits.split(cfg.test_fraction, seed)?;
        Ok(DigitTask { train, test })
    }
}

fn f_mlp(pixels: i64, cfg: &ToumeiConfig) -> Result<SimpleMlp> {
    let f = SimpleMlp::new(&[pixels, cfg.f_hidden, 10])?;
    Ok(if cfg.f_relu_logits {
        f
    } else {
        f.without_last_relu()
    })
}

/// Two copies of F side by side: its widths doubled, its last ReLU (or none) kept.
fn c_mlp(pixels: i64, cfg: &ToumeiConfig) -> Result<SimpleMlp> {
    let f = f_mlp(pixels, cfg)?;
    Ok(SimpleMlp {
        dims: f.dims.iter().map(|d| 2 * d).collect(),
        ..f
    })
}

fn direct_mlp(pixels: i64, cfg: &ToumeiConfig) -> Result<SimpleMlp> {
    SimpleMlp::new(&[2 * pixels, 2 * cfg.f_hidden, 20, 20, 4, 1])
}

fn g_mlp() -> Result<SimpleMlp> {
    SimpleMlp::new(&[20, 4, 1])
}

/// The graph's weight tensors in order, input layer first.
fn graph_weight_names(model: &Model) -> Vec<String> {
    match model {
        Model::Patched(_) => vec![
            "patched_m.fc0.weight".into(),
            "patched_m.fc1.weight".into(),
            "linear_layer.weight".into(),
            "mlp.fc0.weight".into(),
            "mlp.fc1.weight".into(),
        ],
        Model::Direct(_) => (0..5).map(|i| format!("fc{i}.weight")).collect(),
    }
}

/// The weight graph of `params` for `model` (toumei's MLPGraph: every `Linear` weight, biases
/// ignored).
pub fn weight_graph(model: &Model, params: &Params) -> Result<WeightGraph> {
    let weights = graph_weight_names(model)
        .iter()
        .map(|n| params.get(n).map(|t| t.detach()))
        .collect::<Result<Vec<_>>>()?;
    WeightGraph::from_mlp(&weights)
}

/// Parameters that train: a leaf per name, optionally gated by a 0/1 mask and added to a frozen
/// base (the cross blocks of [`WeightLock::Param`]).
struct Trainable {
    base: Params,
    leaves: Vec<(String, Tensor, Option<Tensor>)>,
}

impl Trainable {
    fn leaf_tensors(&self) -> Vec<Tensor> {
        self.leaves
            .iter()
            .map(|(_, t, _)| t.shallow_clone())
            .collect()
    }

    /// The effective parameters (differentiable in the leaves).
    fn params(&self) -> Params {
        let mut out = self.base.clone();
        for (name, leaf, gate) in &self.leaves {
            let t = match (gate, self.base.get(name)) {
                (Some(gate), Ok(base)) => base + leaf * gate,
                _ => leaf.shallow_clone(),
            };
            out.insert(name, t);
        }
        out
    }

    /// Detached copies of the effective parameters.
    fn frozen(&self) -> Params {
        let mut out = Params::new();
        for (name, t) in self.params().iter() {
            out.insert(name, t.detach().copy());
        }
        out
    }
}

fn trainable_all(params: Params) -> Trainable {
    let leaves = params
        .iter()
        .map(|(n, t)| {
            (
                n.to_string(),
                t.detach().copy().set_requires_grad(true),
                None,
            )
        })
        .collect();
    Trainable {
        base: Params::new(),
        leaves,
    }
}

/// The forward pass of `model` on pair inputs.
fn forward(model: &Model, p: &Params, x: &Tensor, cfg: &ToumeiConfig) -> Result<Tensor> {
    let pixels = x.size()[1] / 2;
    match model {
        Model::Patched(_) => {
            let mut h = c_mlp(pixels, cfg)?.forward(p, "patched_m.", x)?;
            if cfg.patch_softmax {
                let n = h.size()[0];
                h = h
                    .reshape([n, 2, 10])
                    .softmax(-1, Kind::Float)
                    .reshape([n, 20]);
            }
            let h = linear(p, "linear_layer", &h)?;
            g_mlp()?.forward(p, "mlp.", &h)
        }
        Model::Direct(_) => direct_mlp(pixels, cfg)?.forward(p, "", x),
    }
}

/// Mean squared error against the goal, and the share within 0.5 of it.
fn regression(pred: &Tensor, target: &Tensor) -> (Tensor, f64) {
    let loss = pred.mse_loss(target, tch::Reduction::Mean);
    let hits = (pred - target)
        .abs()
        .lt(0.5)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    (loss, hits.double_value(&[]))
}

/// One epoch of pairs: every training image once as the first digit.
struct PairEpoch<'a> {
    model: &'a Model,
    net: &'a Trainable,
    batches: Vec<(Vec<usize>, Vec<usize>)>,
    train: &'a Digits,
    target: Target,
    cfg: &'a ToumeiConfig,
}

impl TrainStep for PairEpoch<'_> {
    fn loss(&mut self, step: usize) -> Result<Tensor> {
        let (first, second) = &self.batches[step - 1];
        let pairs = self.train.pairs_of(first, second, Device::Cpu);
        let pred = forward(self.model, &self.net.params(), &pairs.x, self.cfg)?;
        Ok(regression(&pred, &self.target.of(&pairs.first, &pairs.second)).0)
    }
}

fn epoch_batches(train: &Digits, batch: usize, rng: &mut Rng) -> Vec<(Vec<usize>, Vec<usize>)> {
    let (first, second) = train.epoch_pairs(rng);
    first
        .chunks_exact(batch)
        .zip(second.chunks_exact(batch))
        .map(|(a, b)| (a.to_vec(), b.to_vec()))
        .collect()
}

/// Fixed test pairs of a seed.
struct TestPairs {
    first: Vec<usize>,
    second: Vec<usize>,
}

impl TestPairs {
    fn new(test: &Digits, n: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed).fork("toumei/test pairs");
        TestPairs {
            first: (0..n).map(|_| rng.below(test.len())).collect(),
            second: (0..n).map(|_| rng.below(test.len())).collect(),
        }
    }

    fn accuracy(
        &self,
        model: &Model,
        p: &Params,
        test: &Digits,
        target: Target,
        cfg: &ToumeiConfig,
    ) -> Result<f64> {
        let pairs = test.pairs_of(&self.first, &self.second, Device::Cpu);
        let pred = tch::no_grad(|| forward(model, p, &pairs.x, cfg))?;
        Ok(regression(&pred, &target.of(&pairs.first, &pairs.second)).1)
    }
}

/// Reads accuracy and the graph measures of `params`.
fn read(
    epoch: usize,
    accuracy: f64,
    model: &Model,
    params: &Params,
    cfg: &ToumeiConfig,
    seed: u64,
) -> Result<GraphReading> {
    let graph = weight_graph(model, params)?;
    let graph_cfg = ModularityConfig {
        seed: seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
        ..cfg.graph
    };
    let r = graph_modularity(&graph, &graph_cfg)?;
    Ok(GraphReading {
        epoch,
        accuracy,
        q: r.q,
        ncut: r.ncut,
        q_null: (
            r.q_null_mean.unwrap_or(f64::NAN),
            r.q_null_std.unwrap_or(f64::NAN),
        ),
        z: r.z.unwrap_or(f64::NAN),
        p: r.p.unwrap_or(f64::NAN),
        ncut_p: r.ncut_p.unwrap_or(f64::NAN),
    })
}

/// Trains `net` for `model` over `schedule` (one target per epoch; `true` starts a fresh Adam),
/// reading the graph at epoch 0, every `eval_every` epochs and at the end.
#[allow(clippy::too_many_arguments)]
fn train_on_pairs(
    model: Model,
    net: Trainable,
    task: &DigitTask,
    schedule: &[(Target, bool)],
    cfg: &ToumeiConfig,
    seed: u64,
    parts_accuracy: Option<(f64, f64)>,
) -> Result<ToumeiRun> {
    // One batch order per family: the two locks see the same batches, and the goal runs the
    // same batches as the fixed goal until their goals part.
    let family = match model {
        Model::Patched(_) => "patched",
        Model::Direct(_) => "direct",
    };
    let mut rng = Rng::new(seed).fork(&format!("toumei/train/{family}"));
    let tests = TestPairs::new(&task.test, cfg.test_pairs, seed);
    let leaves = net.leaf_tensors();
    let adam = AdamConfig::adam(cfg.lr);
    let mut opt = AdamW::new(&leaves);
    let first_target = schedule.first().map_or(Target::Weighted(1.0, 1.0), |s| s.0);
    let mut readings = vec![read(
        0,
        tests.accuracy(&model, &net.frozen(), &task.test, first_target, cfg)?,
        &model,
        &net.frozen(),
        cfg,
        seed,
    )?];
    for (i, &(target, fresh)) in schedule.iter().enumerate() {
        let epoch = i + 1;
        if fresh {
            opt = AdamW::new(&leaves);
        }
        let batches = epoch_batches(&task.train, cfg.batch_size, &mut rng);
        let steps = batches.len();
        let mut step = PairEpoch {
            model: &model,
            net: &net,
            batches,
            train: &task.train,
            target,
            cfg,
        };
        optimise(&mut step, &leaves, &mut opt, &adam, 1..=steps)?;
        if epoch % cfg.eval_every == 0 || epoch == schedule.len() {
            let params = net.frozen();
            let accuracy = tests.accuracy(&model, &params, &task.test, target, cfg)?;
            readings.push(read(epoch, accuracy, &model, &params, cfg, seed)?);
        }
    }
    let params = net.frozen();
    Ok(ToumeiRun {
        model,
        seed,
        parts_accuracy,
        layer_sizes: weight_graph(&model, &params)?.layer_sizes,
        readings,
        params,
    })
}

/// F trained on single digits (cross-entropy on its ReLU outputs, as toumei): `(params, test
/// accuracy)`.
pub fn train_digit_classifier(
    task: &DigitTask,
    cfg: &ToumeiConfig,
    seed: u64,
) -> Result<(Params, f64)> {
    let pixels = task.train.pixels() as i64;
    let f = f_mlp(pixels, cfg)?;
    let mut rng = Rng::new(seed).fork("toumei/F");
    let net = trainable_all(f.init("", &mut rng));
    let leaves = net.leaf_tensors();
    let mut opt = AdamW::new(&leaves);
    struct Images<'a> {
        f: &'a SimpleMlp,
        net: &'a Trainable,
        train: &'a Digits,
        order: Vec<usize>,
        batch: usize,
    }
    impl TrainStep for Images<'_> {
        fn loss(&mut self, step: usize) -> Result<Tensor> {
            let idx = &self.order[(step - 1) * self.batch..step * self.batch];
            let (x, y) = self.train.batch(idx, Device::Cpu);
            Ok(self
                .f
                .forward(&self.net.params(), "", &x)?
                .cross_entropy_for_logits(&y))
        }
    }
    for _ in 0..cfg.f_epochs {
        let order = rng.permutation(task.train.len());
        let steps = order.len() / cfg.batch_size;
        let mut images = Images {
            f: &f,
            net: &net,
            train: &task.train,
            order,
            batch: cfg.batch_size,
        };
        optimise(
            &mut images,
            &leaves,
            &mut opt,
            &AdamConfig::adam(cfg.lr),
            1..=steps,
        )?;
    }
    let params = net.frozen();
    let all: Vec<usize> = (0..task.test.len()).collect();
    let (x, y) = task.test.batch(&all, Device::Cpu);
    let predicted = tch::no_grad(|| f.forward(&params, "", &x))?.argmax(1, false);
    let accuracy = predicted
        .eq_tensor(&y)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    Ok((params, accuracy))
}

/// Two concatenated one-hot digits `(n, 20)` and both digits.
fn one_hot_pairs(n: usize, rng: &mut Rng) -> (Tensor, Tensor, Tensor) {
    let a: Vec<i64> = (0..n).map(|_| rng.below(10) as i64).collect();
    let b: Vec<i64> = (0..n).map(|_| rng.below(10) as i64).collect();
    let (a, b) = (Tensor::from_slice(&a), Tensor::from_slice(&b));
    let x = Tensor::cat(&[a.one_hot(10), b.one_hot(10)], 1).to_kind(Kind::Float);
    (x, a, b)
}

/// G trained on one-hot pairs (MSE on the sum, batches of 16): `(params, accuracy within 0.5 on
/// all 100 pairs)`. `SimpleMLP(20, 4, 1)` with a ReLU after every layer can die at
/// initialisation (every unit of its 4-wide layer off: it outputs 0 and never learns — 2 of 8
/// seeds did); G is a given component of the patched model, so a draw that does not add all
/// 100 pairs is replaced by a fresh one, up to [`G_DRAWS`] draws, and the best is kept.
pub fn train_adder(cfg: &ToumeiConfig, seed: u64) -> Result<(Params, f64)> {
    let mut best: Option<(Params, f64)> = None;
    for draw in 0..G_DRAWS {
        let (params, accuracy) =
            train_adder_once(cfg, Rng::new(seed).fork(&format!("toumei/G/{draw}")))?;
        if best.as_ref().is_none_or(|(_, b)| accuracy > *b) {
            best = Some((params, accuracy));
        }
        if accuracy >= 1.0 {
            break;
        }
    }
    Ok(best.expect("G_DRAWS ≥ 1"))
}

/// The most initialisations of G tried ([`train_adder`]).
pub const G_DRAWS: usize = 5;

fn train_adder_once(cfg: &ToumeiConfig, mut rng: Rng) -> Result<(Params, f64)> {
    let g = g_mlp()?;
    let net = trainable_all(g.init("", &mut rng));
    let leaves = net.leaf_tensors();
    let mut opt = AdamW::new(&leaves);
    struct OneHots<'a> {
        g: &'a SimpleMlp,
        net: &'a Trainable,
        rng: Rng,
    }
    impl TrainStep for OneHots<'_> {
        fn loss(&mut self, _step: usize) -> Result<Tensor> {
            let (x, a, b) = one_hot_pairs(16, &mut self.rng);
            let pred = self.g.forward(&self.net.params(), "", &x)?;
            Ok(regression(&pred, &Target::Weighted(1.0, 1.0).of(&a, &b)).0)
        }
    }
    let mut task = OneHots {
        g: &g,
        net: &net,
        rng: rng.fork("batches"),
    };
    optimise(
        &mut task,
        &leaves,
        &mut opt,
        &AdamConfig::adam(cfg.lr),
        1..=cfg.g_steps,
    )?;
    let params = net.frozen();
    let (a, b): (Vec<i64>, Vec<i64>) = (0..100).map(|i| (i / 10, i % 10)).unzip();
    let (a, b) = (Tensor::from_slice(&a), Tensor::from_slice(&b));
    let x = Tensor::cat(&[a.one_hot(10), b.one_hot(10)], 1).to_kind(Kind::Float);
    let pred = tch::no_grad(|| g.forward(&params, "", &x))?;
    Ok((
        params.clone(),
        regression(&pred, &Target::Weighted(1.0, 1.0).of(&a, &b)).1,
    ))
}

/// `[[W, X], [X, W]]` for `W` `(out, in)` with `X` zero.
fn block_diagonal(w: &Tensor) -> Tensor {
    let zeros = w.zeros_like();
    Tensor::cat(
        &[Tensor::cat(&[w, &zeros], 1), Tensor::cat(&[&zeros, w], 1)],
        0,
    )
}

/// The 0/1 gate of the cross blocks of a `(2·out, 2·in)` patched weight.
fn cross_gate(rows: i64, cols: i64) -> Tensor {
    let r = Tensor::arange(rows, (Kind::Int64, Device::Cpu)).ge(rows / 2);
    let c = Tensor::arange(cols, (Kind::Int64, Device::Cpu)).ge(cols / 2);
    r.unsqueeze(1)
        .logical_xor(&c.unsqueeze(0))
        .to_kind(Kind::Float)
}

/// The patched model at initialisation: `C` from two copies of F (F's biases too, cross blocks
/// 0), a freshly initialised `linear_layer = Linear(20, 20)`, G. Names: `patched_m.fc{i}.*`,
/// `linear_layer.*`, `mlp.fc{i}.*`.
pub fn patch(f: &Params, g: &Params, seed: u64) -> Result<Params> {
    let mut out = Params::new();
    for i in 0..2 {
        let w = f.get(&format!("fc{i}.weight"))?;
        let b = f.get(&format!("fc{i}.bias"))?;
        out.insert(format!("patched_m.fc{i}.weight"), block_diagonal(w));
        out.insert(format!("patched_m.fc{i}.bias"), Tensor::cat(&[b, b], 0));
    }
    let linear_layer =
        SimpleMlp::new(&[20, 20])?.init("", &mut Rng::new(seed).fork("toumei/linear_layer"));
    out.insert(
        "linear_layer.weight",
        linear_layer.get("fc0.weight")?.shallow_clone(),
    );
    out.insert(
        "linear_layer.bias",
        linear_layer.get("fc0.bias")?.shallow_clone(),
    );
    for (name, t) in g.iter() {
        out.insert(format!("mlp.{name}"), t.shallow_clone());
    }
    Ok(out)
}

/// What can train in the patched model under `lock`.
fn patched_trainable(patched: &Params, lock: WeightLock) -> Result<Trainable> {
    let mut leaves = vec![];
    for name in ["linear_layer.weight", "linear_layer.bias"] {
        leaves.push((
            name.to_string(),
            patched.get(name)?.detach().copy().set_requires_grad(true),
            None,
        ));
    }
    if lock == WeightLock::Param {
        for i in 0..2 {
            let name = format!("patched_m.fc{i}.weight");
            let w = patched.get(&name)?;
            let (rows, cols) = (w.size()[0], w.size()[1]);
            let cross = w.zeros_like().set_requires_grad(true);
            leaves.push((name, cross, Some(cross_gate(rows, cols))));
        }
    }
    let base = patched.clone();
    Ok(Trainable { base, leaves })
}

/// F, G, and the patched model trained under `lock` on the sum task.
pub fn run_patched(
    digits: &Digits,
    cfg: &ToumeiConfig,
    lock: WeightLock,
    seed: u64,
) -> Result<ToumeiRun> {
    cfg.check()?;
    let task = DigitTask::new(digits, cfg, seed)?;
    let (f, f_accuracy) = train_digit_classifier(&task, cfg, seed)?;
    let (g, g_accuracy) = train_adder(cfg, seed)?;
    let patched = patch(&f, &g, seed)?;
    let schedule = vec![(Target::Weighted(1.0, 1.0), false); cfg.patched_epochs];
    train_on_pairs(
        Model::Patched(lock),
        patched_trainable(&patched, lock)?,
        &task,
        &schedule,
        cfg,
        seed,
        Some((f_accuracy, g_accuracy)),
    )
}

/// The direct model trained end to end for `goal` (`Fixed` for `direct_epochs`, the varying
/// goals for `mvg_epochs`; the fixed-goal control of the goal comparison is
/// [`run_goal_control`]).
pub fn run_direct(digits: &Digits, cfg: &ToumeiConfig, goal: Goal, seed: u64) -> Result<ToumeiRun> {
    cfg.check()?;
    let task = DigitTask::new(digits, cfg, seed)?;
    let pixels = task.train.pixels() as i64;
    let mut rng = Rng::new(seed).fork("toumei/direct init");
    let net = trainable_all(direct_mlp(pixels, cfg)?.init("", &mut rng));
    let schedule = match goal {
        Goal::Fixed => vec![(Target::Weighted(1.0, 1.0), false); cfg.direct_epochs],
        _ => goal_schedule(goal, cfg, &mut Rng::new(seed).fork("toumei/goals")),
    };
    train_on_pairs(Model::Direct(goal), net, &task, &schedule, cfg, seed, None)
}

/// The fixed goal trained for as long as the varying goals (`mvg_epochs`).
pub fn run_goal_control(digits: &Digits, cfg: &ToumeiConfig, seed: u64) -> Result<ToumeiRun> {
    run_direct(
        digits,
        &ToumeiConfig {
            direct_epochs: cfg.mvg_epochs,
            ..cfg.clone()
        },
        Goal::Fixed,
        seed,
    )
}

// ------------------------------------------------------------------------------------------
// Masks meet graphs
// ------------------------------------------------------------------------------------------

/// How well one notion of module recovers one known F block of the patched `C`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockRecovery {
    /// Which digit's block (1 or 2).
    pub digit: usize,
    /// Digit accuracy of `C` on the test images: whole, and with the mask applied.
    pub accuracy: (f64, f64),
    /// Weights the mask keeps, of the two masked tensors' total.
    pub kept: (i64, i64),
    /// Percent of the kept weights inside the digit's own block, against random masks that
    /// keep as many weights per tensor (chance: the block's 25 % share).
    pub in_block: ChanceLevel,
    /// IoU of the units the mask touches with the block's units.
    pub mask_iou: f64,
    /// IoU of the matched spectral cluster (k = 2 on `C`'s graph) with the block's units.
    pub cluster_iou: f64,
    /// IoU of the mask's units with that cluster: the two notions of module compared.
    pub mask_cluster_iou: f64,
}

/// The masks-meet-graphs comparison on one patched model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleRecovery {
    /// The patched model the masks were trained on.
    pub model: Model,
    /// Its seed.
    pub seed: u64,
    /// Digit 1 and digit 2.
    pub blocks: Vec<BlockRecovery>,
    /// IoU of the two digits' masks (weights).
    pub masks_iou: f64,
    /// Whether spectral clustering put exactly the two blocks' units into its two clusters.
    pub clusters_exact: bool,
}

/// Names of `C`'s two weight tensors.
fn c_weight_names() -> [String; 2] {
    ["patched_m.fc0.weight".into(), "patched_m.fc1.weight".into()]
}

/// 0/1 membership of every weight of `C`'s tensor `(2·out, 2·in)` in digit `d`'s block.
fn block_gate(rows: i64, cols: i64, digit: usize) -> Tensor {
    let r = Tensor::arange(rows, (Kind::Int64, Device::Cpu)).ge(rows / 2);
    let c = Tensor::arange(cols, (Kind::Int64, Device::Cpu)).ge(cols / 2);
    let own = if digit == 1 { r.logical_not() } else { r };
    let own_c = if digit == 1 { c.logical_not() } else { c };
    own.unsqueeze(1).logical_and(&own_c.unsqueeze(0))
}

/// The units of `C` (layer-major: inputs, hidden, outputs) that belong to digit `d`'s copy of F.
pub fn block_units(layer_sizes: &[usize], digit: usize) -> Vec<bool> {
    layer_sizes
        .iter()
        .flat_map(|&n| (0..n).map(move |i| (i >= n / 2) == (digit == 2)))
        .collect()
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Units of `C` touched by at least one kept weight.
fn used_units(binary: &[Tensor], layer_sizes: &[usize]) -> Vec<bool> {
    let mut used = vec![false; layer_sizes.iter().sum()];
    let mut start = 0;
    for (l, m) in binary.iter().enumerate() {
        let outs = Vec::<bool>::try_from(m.gt(0.5).any_dim(1, false)).unwrap_or_default();
        let ins = Vec::<bool>::try_from(m.gt(0.5).any_dim(0, false)).unwrap_or_default();
        let (n_in, n_out) = (layer_sizes[l], layer_sizes[l + 1]);
        (0..n_in).for_each(|i| used[start + i] |= ins[i]);
        (0..n_out).for_each(|j| used[start + n_in + j] |= outs[j]);
        start += n_in;
    }
    used
}

struct DigitMasking<'a> {
    c: &'a SimpleMlp,
    base: &'a Params,
    specs: &'a [ParamSpec],
    logits: &'a FlatLogits,
    train: &'a Digits,
    digit: usize,
    cfg: &'a ToumeiConfig,
    rng: Rng,
}

impl TrainStep for DigitMasking<'_> {
    fn loss(&mut self, _step: usize) -> Result<Tensor> {
        let pairs = self
            .train
            .pairs(self.cfg.batch_size, &mut self.rng, Device::Cpu);
        let (p, _) = self
            .logits
            .sample(self.specs, self.base, self.cfg.mask.samples, 1.0)?;
        let out = self.c.forward(&p, "patched_m.", &pairs.x)?;
        let y = if self.digit == 1 {
            &pairs.first
        } else {
            &pairs.second
        };
        let logits = out.narrow(1, 10 * (self.digit as i64 - 1), 10);
        Ok(logits.cross_entropy_for_logits(y) + self.logits.sum() * self.cfg.mask.alpha)
    }
}

/// Digit-`d` accuracy of `C` with `params` on fixed test pairs.
fn digit_accuracy(
    c: &SimpleMlp,
    params: &Params,
    pairs: &crate::data::digits::DigitPairs,
    digit: usize,
) -> Result<f64> {
    let out = tch::no_grad(|| c.forward(params, "patched_m.", &pairs.x))?;
    let y = if digit == 1 {
        &pairs.first
    } else {
        &pairs.second
    };
    let predicted = out.narrow(1, 10 * (digit as i64 - 1), 10).argmax(1, false);
    Ok(predicted
        .eq_tensor(y)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]))
}

/// Trains the mask of "recognise digit `digit`" on `C`'s two weight tensors: binary masks `l > 0`.
fn train_digit_mask(
    run: &ToumeiRun,
    task: &DigitTask,
    cfg: &ToumeiConfig,
    digit: usize,
) -> Result<Vec<Tensor>> {
    let pixels = task.train.pixels() as i64;
    let c = c_mlp(pixels, cfg)?;
    let specs = c.param_specs("patched_m.");
    let mut initial = Params::new();
    for name in c_weight_names() {
        let shape = run.params.get(&name)?.size();
        initial.insert(
            &name,
            Tensor::full(
                shape.as_slice(),
                cfg.mask.logit_init,
                (Kind::Float, Device::Cpu),
            ),
        );
    }
    let logits = FlatLogits::new(&initial);
    let leaves = [logits.flat.shallow_clone()];
    let mut opt = AdamW::new(&leaves);
    tch::manual_seed(run.seed as i64 * 7 + digit as i64);
    let mut step = DigitMasking {
        c: &c,
        base: &run.params,
        specs: &specs,
        logits: &logits,
        train: &task.train,
        digit,
        cfg,
        rng: Rng::new(run.seed).fork(&format!("toumei/mask{digit}")),
    };
    optimise(
        &mut step,
        &leaves,
        &mut opt,
        &AdamConfig::adam(cfg.mask.lr),
        1..=cfg.mask.steps,
    )?;
    let trained = logits.to_params();
    c_weight_names()
        .iter()
        .map(|n| Ok(trained.get(n)?.gt(0.0).to_kind(Kind::Float)))
        .collect()
}

/// Percent of kept weights inside the block, and the same for `draws` random masks keeping as
/// many weights per tensor.
fn in_block_chance(binary: &[Tensor], digit: usize, draws: usize, seed: u64) -> ChanceLevel {
    let mut rng = Rng::new(seed).fork(&format!("toumei/in-block null {digit}"));
    let per_tensor: Vec<(Vec<bool>, usize)> = binary
        .iter()
        .map(|m| {
            let gate = block_gate(m.size()[0], m.size()[1], digit);
            let gate = Vec::<bool>::try_from(gate.flatten(0, -1)).unwrap_or_default();
            (gate, m.sum(Kind::Double).double_value(&[]) as usize)
        })
        .collect();
    let kept_total: usize = per_tensor.iter().map(|(_, k)| k).sum();
    let observed: usize = binary
        .iter()
        .zip(&per_tensor)
        .map(|(m, (gate, _))| {
            let kept = Vec::<bool>::try_from(m.gt(0.5).flatten(0, -1)).unwrap_or_default();
            kept.iter().zip(gate).filter(|(k, g)| **k && **g).count()
        })
        .sum();
    let percent = |n: usize| 100.0 * n as f64 / kept_total.max(1) as f64;
    let null: Vec<f64> = (0..draws)
        .map(|_| {
            let inside: usize = per_tensor
                .iter()
                .map(|(gate, kept)| {
                    rng.permutation(gate.len())[..*kept]
                        .iter()
                        .filter(|&&i| gate[i])
                        .count()
                })
                .sum();
            percent(inside)
        })
        .collect();
    ChanceLevel::of(&[percent(observed)], &null)
}

/// Masks for "recognise digit 1" and "recognise digit 2" on a patched run's `C`, each compared
/// with its known F block and with the spectral clusters (k = 2) of `C`'s weight graph.
pub fn masks_meet_graphs(
    digits: &Digits,
    run: &ToumeiRun,
    cfg: &ToumeiConfig,
) -> Result<ModuleRecovery> {
    if !matches!(run.model, Model::Patched(_)) {
        return Err(Error::Config(format!(
            "masks meet graphs needs a patched model, not {}",
            run.model.label()
        )));
    }
    let task = DigitTask::new(digits, cfg, run.seed)?;
    let c = c_mlp(task.train.pixels() as i64, cfg)?;
    let weights: Vec<Tensor> = c_weight_names()
        .iter()
        .map(|n| run.params.get(n).map(|t| t.shallow_clone()))
        .collect::<Result<_>>()?;
    let graph = WeightGraph::from_mlp(&weights)?;
    let labels = spectral_clustering(
        &graph.adjacency,
        2,
        cfg.graph.restarts.max(1),
        &mut Rng::new(run.seed).fork("toumei/C clusters"),
    )?;
    let clusters: [Vec<bool>; 2] = [0, 1].map(|c| labels.iter().map(|&l| l == c).collect());
    let blocks = [
        block_units(&graph.layer_sizes, 1),
        block_units(&graph.layer_sizes, 2),
    ];
    // Match the clusters to the blocks the way that overlaps best.
    let straight = iou(&clusters[0], &blocks[0]) + iou(&clusters[1], &blocks[1]);
    let crossed = iou(&clusters[1], &blocks[0]) + iou(&clusters[0], &blocks[1]);
    let matched = if straight >= crossed { [0, 1] } else { [1, 0] };
    let mut rng = Rng::new(run.seed).fork("toumei/mask test pairs");
    let test_pairs = task.test.pairs(cfg.test_pairs, &mut rng, Device::Cpu);
    let mut masks = Vec::new();
    let mut recovered = Vec::new();
    for digit in [1, 2] {
        let binary = train_digit_mask(run, &task, cfg, digit)?;
        let mut masked = run.params.clone();
        for (name, m) in c_weight_names().iter().zip(&binary) {
            masked.insert(name, run.params.get(name)? * m);
        }
        let used = used_units(&binary, &graph.layer_sizes);
        let cluster = &clusters[matched[digit - 1]];
        let kept: i64 = binary
            .iter()
            .map(|m| m.sum(Kind::Double).double_value(&[]) as i64)
            .sum();
        let total: i64 = binary.iter().map(|m| m.numel() as i64).sum();
        recovered.push(BlockRecovery {
            digit,
            accuracy: (
                digit_accuracy(&c, &run.params, &test_pairs, digit)?,
                digit_accuracy(&c, &masked, &test_pairs, digit)?,
            ),
            kept: (kept, total),
            in_block: in_block_chance(&binary, digit, 200, run.seed),
            mask_iou: iou(&used, &blocks[digit - 1]),
            cluster_iou: iou(cluster, &blocks[digit - 1]),
            mask_cluster_iou: iou(&used, cluster),
        });
        masks.push(binary);
    }
    let flat = |m: &[Tensor]| -> Vec<bool> {
        m.iter()
            .flat_map(|t| Vec::<bool>::try_from(t.gt(0.5).flatten(0, -1)).unwrap_or_default())
            .collect()
    };
    Ok(ModuleRecovery {
        model: run.model,
        seed: run.seed,
        masks_iou: iou(&flat(&masks[0]), &flat(&masks[1])),
        clusters_exact: recovered.iter().all(|b| b.cluster_iou == 1.0),
        blocks: recovered,
    })
}

// ------------------------------------------------------------------------------------------
// The whole experiment over seeds
// ------------------------------------------------------------------------------------------

/// Which experiments [`run_toumei`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Experiment {
    /// Both patched variants and the direct model, compared.
    Patched,
    /// The direct model alone.
    Direct,
    /// Switching and random goals against the fixed goal.
    Mvg,
    /// Masks meet graphs on both patched variants.
    Masks,
    /// Everything.
    All,
}

/// Every run, comparison and module recovery of an experiment over seeds; `--json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToumeiReport {
    /// The settings.
    pub config: ToumeiConfig,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Where the digits came from and how many there are.
    pub digits: (String, usize),
    /// Every trained model.
    pub runs: Vec<ToumeiRun>,
    /// Final Q compared between models over seeds (permutation tests).
    pub comparisons: Vec<MeanComparison>,
    /// The same comparisons at other k (the robustness of the finding to the number of
    /// clusters), each k against the same shuffles.
    pub k_sweep: Vec<KSweepPoint>,
    /// Masks meet graphs, per patched run.
    pub recoveries: Vec<ModuleRecovery>,
    /// Seconds the experiment took.
    pub seconds: f64,
}

impl ToumeiReport {
    /// The runs of `model`, in seed order.
    pub fn runs_of(&self, model: Model) -> Vec<&ToumeiRun> {
        self.runs.iter().filter(|r| r.model == model).collect()
    }

    /// The final Q of every seed of `model`.
    pub fn final_q(&self, model: Model) -> Vec<f64> {
        self.runs_of(model).iter().map(|r| r.last().q).collect()
    }

    /// The finding of each comparison, in words (test at 0.05).
    pub fn findings(&self) -> Vec<String> {
        self.comparisons.iter().map(|c| c.verdict(0.05)).collect()
    }

    /// The finding of the comparison of `a` with `b` (the fixed-goal control when `a` is a
    /// varying goal and `b` the direct model), capitalised.
    pub fn finding(&self, a: Model, b: Model) -> Text {
        let b_names = [b.label(), "fixed goal".to_string()];
        let found = self
            .comparisons
            .iter()
            .find(|c| c.groups.0 == a.label() && b_names.contains(&c.groups.1));
        Text(match found {
            Some(c) => capitalise(&c.verdict(0.05)) + ".",
            None => format!(
                "No comparison of {} with {} in this report.",
                a.label(),
                b.label()
            ),
        })
    }

    /// What the masks-meet-graphs comparison found, in words, computed from its readings.
    pub fn recovery_sentence(&self) -> Text {
        let blocks: Vec<&BlockRecovery> = self.recoveries.iter().flat_map(|r| &r.blocks).collect();
        if blocks.is_empty() {
            return Text("No masks were trained in this report.".into());
        }
        let values =
            |f: fn(&BlockRecovery) -> f64| -> Vec<f64> { blocks.iter().map(|b| f(b)).collect() };
        let interval = |f: fn(&BlockRecovery) -> f64, d| {
            super::replicates::Interval::t95(&values(f)).summary(d)
        };
        let above = blocks.iter().filter(|b| b.in_block.p <= 0.05).count();
        let exact = self.recoveries.iter().filter(|r| r.clusters_exact).count();
        Text(format!(
            "Over {} masks ({} patched runs × 2 digits), a digit's mask keeps {} % of C's weights, \
             {} % of them inside its own F block against a chance level of {} % ({above} of {} \
             above chance at p ≤ 0.05); the units it uses cover its block with IoU {}. Spectral \
             clustering (k = 2) recovers the blocks with IoU {}, exactly in {exact} of {} runs; \
             mask and cluster agree with IoU {}.",
            blocks.len(),
            self.recoveries.len(),
            interval(|b| 100.0 * b.kept.0 as f64 / b.kept.1.max(1) as f64, 1),
            interval(|b| b.in_block.observed, 1),
            interval(|b| b.in_block.null_mean, 1),
            blocks.len(),
            interval(|b| b.mask_iou, 3),
            interval(|b| b.cluster_iou, 3),
            self.recoveries.len(),
            interval(|b| b.mask_cluster_iou, 3),
        ))
    }
}

/// Runs `experiment` for every seed and compares the final Q of the models over seeds.
pub fn run_toumei(
    digits: &Digits,
    cfg: &ToumeiConfig,
    experiment: Experiment,
    seeds: &[u64],
) -> Result<ToumeiReport> {
    cfg.check()?;
    if seeds.is_empty() {
        return Err(Error::NotEnough("toumei: no seeds".into()));
    }
    let started = std::time::Instant::now();
    let wants = |e: Experiment| experiment == e || experiment == Experiment::All;
    let mut runs = Vec::new();
    for &seed in seeds {
        crate::session::progress(&format!("toumei seed {seed}"));
        if wants(Experiment::Patched) || wants(Experiment::Masks) {
            runs.push(run_patched(digits, cfg, WeightLock::Model, seed)?);
            runs.push(run_patched(digits, cfg, WeightLock::Param, seed)?);
        }
        if wants(Experiment::Patched) || wants(Experiment::Direct) {
            runs.push(run_direct(digits, cfg, Goal::Fixed, seed)?);
        }
        if wants(Experiment::Mvg) {
            if !(wants(Experiment::Patched) && cfg.mvg_epochs == cfg.direct_epochs) {
                runs.push(run_goal_control(digits, cfg, seed)?);
            }
            runs.push(run_direct(digits, cfg, Goal::Switching, seed)?);
            runs.push(run_direct(digits, cfg, Goal::Random, seed)?);
        }
    }
    crate::session::progress_done();
    let mut report = ToumeiReport {
        config: cfg.clone(),
        seeds: seeds.to_vec(),
        digits: (digits.source.display().to_string(), digits.len()),
        runs,
        comparisons: Vec::new(),
        k_sweep: Vec::new(),
        recoveries: Vec::new(),
        seconds: 0.0,
    };
    let mut pairs: Vec<Pairing> = Vec::new();
    if matches!(experiment, Experiment::Patched | Experiment::All) {
        for lock in [WeightLock::Model, WeightLock::Param] {
            pairs.push((Model::Patched(lock), cfg.direct_epochs, "direct"));
        }
    }
    if matches!(experiment, Experiment::Mvg | Experiment::All) {
        for goal in [Goal::Switching, Goal::Random] {
            pairs.push((Model::Direct(goal), cfg.mvg_epochs, "fixed goal"));
        }
    }
    if seeds.len() >= 2 {
        let final_q: Vec<f64> = report.runs.iter().map(|r| r.last().q).collect();
        report.comparisons = report.compare(&pairs, &final_q, "final Q")?;
        report.k_sweep = report.k_sweep(&pairs, cfg)?;
    }
    if wants(Experiment::Masks) {
        let patched: Vec<ToumeiRun> = report
            .runs
            .iter()
            .filter(|r| matches!(r.model, Model::Patched(_)))
            .cloned()
            .collect();
        for run in &patched {
            report.recoveries.push(masks_meet_graphs(digits, run, cfg)?);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A comparison over seeds: a model, the epochs of the fixed-goal direct runs it is compared
/// with, and what those are called.
type Pairing = (Model, usize, &'static str);

/// The k sweep at one k.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KSweepPoint {
    /// Number of clusters.
    pub k: usize,
    /// The report's comparisons, with Q read at this k.
    pub comparisons: Vec<MeanComparison>,
    /// Mean Q of the shuffled networks at this k, per compared group.
    pub null_q: Vec<(String, f64)>,
}

impl ToumeiReport {
    /// `values[i]` of the runs (`i` indexes `self.runs`) of `model` that ended at `epochs`, one per
    /// seed.
    fn values_of(&self, model: Model, epochs: Option<usize>, values: &[f64]) -> Vec<f64> {
        let mut seen = std::collections::BTreeSet::new();
        self.runs
            .iter()
            .zip(values)
            .filter(|(r, _)| r.model == model && epochs.is_none_or(|e| r.last().epoch == e))
            .filter(|(r, _)| seen.insert(r.seed))
            .map(|(_, v)| *v)
            .collect()
    }

    /// Each pairing compared on `values` (one per run).
    fn compare(
        &self,
        pairs: &[Pairing],
        values: &[f64],
        measure: &str,
    ) -> Result<Vec<MeanComparison>> {
        pairs
            .iter()
            .map(|&(a, epochs, b_name)| {
                let va = self.values_of(a, None, values);
                let vb = self.values_of(Model::Direct(Goal::Fixed), Some(epochs), values);
                compare_means(measure, (&a.label(), &va), (b_name, &vb), 0)
            })
            .collect()
    }

    /// The comparisons redone at every k of [`K_SWEEP`], each run's final graph clustered at all
    /// of them against the same shuffles.
    fn k_sweep(&self, pairs: &[Pairing], cfg: &ToumeiConfig) -> Result<Vec<KSweepPoint>> {
        let sweeps = self
            .runs
            .iter()
            .map(|r| {
                let graph_cfg = ModularityConfig {
                    seed: r.seed,
                    ..cfg.graph
                };
                modularity_sweep(&r.graph()?, &K_SWEEP, &graph_cfg)
            })
            .collect::<Result<Vec<_>>>()?;
        K_SWEEP
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let q: Vec<f64> = sweeps.iter().map(|s| s.points[i].q).collect();
                let null: Vec<f64> = sweeps
                    .iter()
                    .map(|s| s.points[i].q_null_mean.unwrap_or(f64::NAN))
                    .collect();
                let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
                let null_q = pairs
                    .iter()
                    .map(|&(a, _, _)| (a.label(), mean(self.values_of(a, None, &null))))
                    .collect();
                Ok(KSweepPoint {
                    k,
                    comparisons: self.compare(pairs, &q, &format!("final Q at k = {k}"))?,
                    null_q,
                })
            })
            .collect()
    }

    /// The k sweep as a table: one row per k, per comparison the difference of mean Q and p.
    pub fn k_sweep_table(&self) -> Result<crate::display::Table> {
        use polars::prelude::{Column, DataFrame};
        let mut columns = vec![Column::new(
            "k".into(),
            self.k_sweep.iter().map(|p| p.k as i64).collect::<Vec<_>>(),
        )];
        let names: Vec<String> = self
            .k_sweep
            .first()
            .map(|p| {
                p.comparisons
                    .iter()
                    .map(|c| format!("{} − {}", c.groups.0, c.groups.1))
                    .collect()
            })
            .unwrap_or_default();
        for (i, name) in names.iter().enumerate() {
            let cells: Vec<String> = self
                .k_sweep
                .iter()
                .map(|p| {
                    let c = &p.comparisons[i];
                    format!(
                        "{:+.3} (p = {})",
                        c.difference,
                        super::replicates::p_text(c.p)
                    )
                })
                .collect();
            columns.push(Column::new(name.as_str().into(), cells));
        }
        Ok(
            crate::display::Table::new(DataFrame::new_infer_height(columns)?).with_caption(
                format!(
                    "Difference of mean final Q over {} seeds at each k, exact permutation p",
                    self.seeds.len()
                ),
            ),
        )
    }

    /// Whether each comparison's verdict (significant or not at 0.05, and its sign) is the same
    /// at every k of the sweep, in words.
    pub fn k_sweep_sentence(&self) -> Text {
        if self.k_sweep.is_empty() {
            return Text("No k sweep in this report (it needs two seeds or more).".into());
        }
        let ks: Vec<String> = self.k_sweep.iter().map(|p| p.k.to_string()).collect();
        let sentences: Vec<String> = (0..self.k_sweep[0].comparisons.len())
            .map(|i| {
                let verdicts: Vec<i8> = self
                    .k_sweep
                    .iter()
                    .map(|p| {
                        let c = &p.comparisons[i];
                        if c.p > 0.05 {
                            0
                        } else if c.difference > 0.0 {
                            1
                        } else {
                            -1
                        }
                    })
                    .collect();
                let c = &self.k_sweep[0].comparisons[i];
                let (a, b) = (&c.groups.0, &c.groups.1);
                let holds = verdicts.iter().all(|v| *v == verdicts[0]);
                let verdict = match verdicts[0] {
                    1 => format!("{a} is more modular than {b}"),
                    -1 => format!("{a} is less modular than {b}"),
                    _ => format!("no significant difference between {a} and {b}"),
                };
                match holds {
                    true => format!("At every k: {verdict}."),
                    false => {
                        let by_k: Vec<String> = self
                            .k_sweep
                            .iter()
                            .zip(&verdicts)
                            .map(|(p, v)| {
                                format!(
                                    "k = {}: {}",
                                    p.k,
                                    ["lower", "no difference", "higher"][(v + 1) as usize]
                                )
                            })
                            .collect();
                        format!(
                            "{a} vs {b}: the verdict depends on k ({}).",
                            by_k.join("; ")
                        )
                    }
                }
            })
            .collect();
        let smallest = self.k_sweep[0]
            .comparisons
            .iter()
            .map(|c| c.smallest_possible_p)
            .fold(0.0, f64::max);
        let caveat = match smallest > 0.05 {
            true => format!(
                " With {} seeds the smallest attainable p is {smallest:.3}: more seeds are needed.",
                self.seeds.len()
            ),
            false => String::new(),
        };
        Text(format!(
            "k = {}. {}{caveat}",
            ks.join(", "),
            sentences.join(" ")
        ))
    }
}

/// The numbers of clusters of the k sweep.
pub const K_SWEEP: [usize; 5] = [2, 4, 8, 12, 16];

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or(String::new(), |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

// ------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------

/// The models of a report in a fixed order (those it ran).
fn models_in(report: &ToumeiReport) -> Vec<Model> {
    let all = [
        Model::Patched(WeightLock::Model),
        Model::Patched(WeightLock::Param),
        Model::Direct(Goal::Fixed),
        Model::Direct(Goal::Switching),
        Model::Direct(Goal::Random),
    ];
    all.into_iter()
        .filter(|m| !report.runs_of(*m).is_empty())
        .collect()
}

impl ToumeiReport {
    /// One row per model and schedule: final test accuracy, Q, the shuffles' Q, z, and how many
    /// seeds beat every shuffle — means with 95 % intervals over seeds.
    pub fn summary_table(&self) -> Result<crate::display::Table> {
        use polars::prelude::{Column, DataFrame};
        let mut rows: Vec<(String, Vec<&ToumeiRun>)> = Vec::new();
        for model in models_in(self) {
            let mut by_epochs: std::collections::BTreeMap<usize, Vec<&ToumeiRun>> =
                Default::default();
            for run in self.runs_of(model) {
                by_epochs.entry(run.last().epoch).or_default().push(run);
            }
            for (epochs, runs) in by_epochs {
                rows.push((format!("{} ({epochs} epochs)", model.label()), runs));
            }
        }
        let interval = |runs: &[&ToumeiRun], f: fn(&GraphReading) -> f64, scale: f64, d: usize| {
            let values: Vec<f64> = runs.iter().map(|r| scale * f(r.last())).collect();
            super::replicates::Interval::t95(&values).summary(d)
        };
        let col = |name: &str, f: &dyn Fn(&[&ToumeiRun]) -> String| {
            Column::new(
                name.into(),
                rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>(),
            )
        };
        let shuffles = self.config.graph.shuffles;
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "model".into(),
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            col("test accuracy %", &|r| {
                interval(r, |g| g.accuracy, 100.0, 1)
            }),
            col("Q", &|r| interval(r, |g| g.q, 1.0, 3)),
            col("Q of shuffles", &|r| interval(r, |g| g.q_null.0, 1.0, 3)),
            col("z", &|r| interval(r, |g| g.z, 1.0, 1)),
            col("seeds above every shuffle", &|r| {
                let best = 1.0 / (shuffles + 1) as f64;
                let n = r.iter().filter(|x| x.last().p <= best + 1e-12).count();
                format!("{n} of {}", r.len())
            }),
        ])?;
        Ok(crate::display::Table::new(df).with_caption(format!(
            "Final readings over {} seeds (k = {}, γ = {}, {shuffles} layer shuffles each; \
             intervals: 95 % t)",
            self.seeds.len(),
            self.config.graph.k,
            self.config.graph.gamma
        )))
    }

    /// Masks meet graphs: one row per patched run and digit.
    pub fn recovery_table(&self) -> Result<crate::display::Table> {
        use polars::prelude::{Column, DataFrame};
        let rows: Vec<(&ModuleRecovery, &BlockRecovery)> = self
            .recoveries
            .iter()
            .flat_map(|r| r.blocks.iter().map(move |b| (r, b)))
            .collect();
        let f = |name: &str, g: &dyn Fn(&ModuleRecovery, &BlockRecovery) -> f64| {
            Column::new(
                name.into(),
                rows.iter().map(|(r, b)| g(r, b)).collect::<Vec<_>>(),
            )
        };
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "model".into(),
                rows.iter()
                    .map(|(r, _)| format!("{} s{}", r.model.label(), r.seed))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "digit".into(),
                rows.iter().map(|(_, b)| b.digit as i64).collect::<Vec<_>>(),
            ),
            f("acc % whole", &|_, b| 100.0 * b.accuracy.0),
            f("acc % masked", &|_, b| 100.0 * b.accuracy.1),
            f("kept %", &|_, b| {
                100.0 * b.kept.0 as f64 / b.kept.1.max(1) as f64
            }),
            f("in own block %", &|_, b| b.in_block.observed),
            f("chance %", &|_, b| b.in_block.null_mean),
            f("p", &|_, b| b.in_block.p),
            f("mask IoU", &|_, b| b.mask_iou),
            f("cluster IoU", &|_, b| b.cluster_iou),
            f("mask–cluster IoU", &|_, b| b.mask_cluster_iou),
        ])?;
        Ok(crate::display::Table::new(df).with_caption(
            "Masks for 'recognise digit 1/2' on the patched C against its known F blocks and its \
             spectral clusters (k = 2); IoUs over units; chance: random masks keeping as many \
             weights per tensor (200 draws)",
        ))
    }

    /// Inline display in evcxr: the summary table, the recoveries and the findings.
    pub fn evcxr_display(&self) {
        if let Ok(t) = self.summary_table() {
            t.evcxr_display();
        }
        if !self.recoveries.is_empty() {
            if let Ok(t) = self.recovery_table() {
                t.evcxr_display();
            }
        }
        for finding in self.findings() {
            println!(
                "EVCXR_BEGIN_CONTENT text/html\n<p>{}</p>\nEVCXR_END_CONTENT",
                crate::display::escape_html(&finding)
            );
        }
    }
}
