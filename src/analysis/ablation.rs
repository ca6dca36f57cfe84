//! Ablation against its chance levels: what removing a module costs.
//!
//! Removing a module zeroes the weights its mask keeps (the inverted mask). On its own that
//! reading says little: any 10 % of the weights might matter. Two chance levels, in seeded
//! draws: as many weights removed anywhere in the masked tensors, and as many removed from
//! each tensor as the module keeps there, at random places (its layer profile, the
//! count-matched null of the other module measures). A module matters beyond its size only
//! where removing it costs more than the first; beyond its layer profile, more than the second.
//!
//! Accuracies are read as a fair coin breaks tied scores, and the ties are counted. A model
//! that scores every candidate alike has no answer, whatever index `argmax` happens to return.
//! This is what removing a module does when it keeps a whole tensor (every BatchNorm scale of a
//! layer, say): every panel then gets the same embedding. A probe names the tensors whose
//! module weights, removed alone, already do that.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::replicates::{means_by_task, task_of, Interval};
use crate::checkpoint::Checkpoint;
use crate::data::AvrDataset;
use crate::display::Table;
use crate::masking::bits::{Binarize, MaskBits, TensorBits};
use crate::masking::set::{MaskSet, TaskSets};
use crate::masking::Mask;
use crate::model::Params;
use crate::rng::Rng;
use crate::train::eval::{evaluate_with, EvalOptions, EvalReport};
use crate::{Error, Result};

/// Problems read when looking for the tensors whose removal alone ties every candidate: a
/// model whose scores tie on all of them no longer depends on the candidate.
pub const COLLAPSE_PROBE_PROBLEMS: usize = 16;

/// The format of the records [`ablate`] writes: 2 adds the layer-matched removals, the
/// collapse probe and the all-candidates tie count.
pub const ABLATION_FORMAT: u32 = 2;

/// Settings of an ablation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AblationConfig {
    /// Held-out problems evaluated, evenly spread; 0 = all (default 200, as many as mask
    /// training evaluates on).
    pub problems: usize,
    /// Random count-matched removals (default 5).
    pub draws: usize,
    /// Seed of the random removals (default 0).
    pub seed: u64,
}

impl Default for AblationConfig {
    fn default() -> Self {
        AblationConfig {
            problems: 200,
            draws: 5,
            seed: 0,
        }
    }
}

crate::with_setters!(AblationConfig {
    with_problems => problems: usize,
    with_draws => draws: usize,
    with_seed => seed: u64,
});

/// One accuracy reading of an ablation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AblatedAccuracy {
    /// Fraction correct, ties to the first maximal index (`torch.argmax`).
    pub accuracy: f64,
    /// Fraction correct with ties broken uniformly at random: the reading to compare.
    pub expected_accuracy: f64,
    /// Problems whose highest score is shared by two or more candidates.
    pub tied: usize,
    /// Problems whose candidates all share the highest score: no answer at all.
    #[serde(default)]
    pub all_tied: usize,
    /// Problems evaluated.
    pub n: usize,
}

impl From<&EvalReport> for AblatedAccuracy {
    fn from(r: &EvalReport) -> Self {
        AblatedAccuracy {
            accuracy: r.accuracy,
            expected_accuracy: r.expected_accuracy(),
            tied: r.tied,
            all_tied: r.all_tied,
            n: r.n,
        }
    }
}

/// What removing one module costs, against removing as many random weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ablation {
    /// The record's format ([`ABLATION_FORMAT`]); older records (0) lack readings and are
    /// measured again.
    #[serde(default)]
    pub format: u32,
    /// The mask's name.
    pub mask: String,
    /// The settings used.
    pub config: AblationConfig,
    /// Weights the module keeps (and its removal zeroes), of all masked weights.
    pub kept: i64,
    /// All masked weights.
    pub total: i64,
    /// Masked tensors the module keeps entirely: removing it zeroes them.
    pub whole_tensors: Vec<String>,
    /// Tensors where removing only the module's weights, all else intact, already ties every
    /// candidate on the first [`COLLAPSE_PROBE_PROBLEMS`] held-out problems: where a collapse
    /// comes from. `None` in a record written before this probe existed.
    #[serde(default)]
    pub collapsing_tensors: Option<Vec<String>>,
    /// The model unmasked.
    pub unmasked: AblatedAccuracy,
    /// Only the module kept (the mask applied).
    pub module_only: AblatedAccuracy,
    /// The module removed (the inverted mask).
    pub module_removed: AblatedAccuracy,
    /// `kept` weights drawn uniformly from all masked tensors removed, one reading per draw.
    pub random_removed: Vec<AblatedAccuracy>,
    /// As many weights removed from each tensor as the module keeps there, at random places
    /// inside it (the count-matched null of the other measures), one reading per draw. It
    /// keeps the module's layer profile and asks whether its particular weights matter.
    #[serde(default)]
    pub layer_matched_removed: Vec<AblatedAccuracy>,
}

impl Ablation {
    /// Where the ablation of the mask at `mask_path` is kept: `<stem>.ablation.json` beside it.
    pub fn path_for(mask_path: &Path) -> PathBuf {
        mask_path.with_extension("ablation.json")
    }

    /// Mean accuracy (ties broken at random) over the random removals.
    pub fn random_removed_accuracy(&self) -> f64 {
        let n = self.random_removed.len().max(1) as f64;
        self.random_removed
            .iter()
            .map(|r| r.expected_accuracy)
            .sum::<f64>()
            / n
    }

    /// Mean accuracy (ties broken at random) over the layer-matched removals (`None` in a
    /// record written before they were measured).
    pub fn layer_matched_accuracy(&self) -> Option<f64> {
        let r = &self.layer_matched_removed;
        (!r.is_empty()).then(|| r.iter().map(|r| r.expected_accuracy).sum::<f64>() / r.len() as f64)
    }

    /// Whether this record is of the current format and was measured with `cfg`.
    pub fn is_current(&self, cfg: &AblationConfig) -> bool {
        self.format == ABLATION_FORMAT && self.config == *cfg
    }

    /// Points lost by removing the module beyond removing as many random weights.
    pub fn excess_loss_points(&self) -> f64 {
        100.0 * (self.random_removed_accuracy() - self.module_removed.expected_accuracy)
    }

    /// Points lost by removing the module beyond removing as many weights per tensor at
    /// random places.
    pub fn layer_matched_excess_points(&self) -> Option<f64> {
        self.layer_matched_accuracy()
            .map(|a| 100.0 * (a - self.module_removed.expected_accuracy))
    }

    /// Writes this record as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::bad_file(path, format!("cannot encode the ablation: {e}")))?;
        crate::files::write_atomic(path, &text)
    }

    /// Reads a record [`Ablation::save`] wrote.
    pub fn load(path: &Path) -> Result<Ablation> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not an ablation record: {e}")))
    }

    /// One row per setting: accuracy, accuracy with ties broken at random, ties.
    pub fn table(&self) -> Result<Table> {
        let mut rows: Vec<(String, AblatedAccuracy)> = vec![
            ("unmasked".into(), self.unmasked),
            ("module only".into(), self.module_only),
            ("module removed".into(), self.module_removed),
        ];
        rows.extend(
            self.random_removed
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("random removal {}", i + 1), *r)),
        );
        rows.extend(
            self.layer_matched_removed
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("layer-matched removal {}", i + 1), *r)),
        );
        let pct = |f: fn(&AblatedAccuracy) -> f64| -> Vec<f64> {
            rows.iter().map(|(_, r)| 100.0 * f(r)).collect()
        };
        let df = df!(
            "setting" => rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "accuracy_%" => pct(|r| r.accuracy),
            "ties_broken_at_random_%" => pct(|r| r.expected_accuracy),
            "tied" => rows.iter().map(|r| r.1.tied as u32).collect::<Vec<_>>(),
            "all_tied" => rows.iter().map(|r| r.1.all_tied as u32).collect::<Vec<_>>(),
            "n" => rows.iter().map(|r| r.1.n as u32).collect::<Vec<_>>(),
        )?;
        Ok(Table::new(df).with_caption(format!(
            "{}: removing its {} of {} weights costs {:.1} points beyond removing as many \
             random ones (mean of {} draws)",
            self.mask,
            self.kept,
            self.total,
            self.excess_loss_points(),
            self.random_removed.len()
        )))
    }

    /// Inline display: the table.
    pub fn evcxr_display(&self) {
        match self.table() {
            Ok(t) => t.evcxr_display(),
            Err(_) => println!("{self:?}"),
        }
    }
}

/// Ablations of several modules, read together: one checkpoint's shape masks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ablations {
    /// One record per mask.
    pub records: Vec<Ablation>,
}

impl Ablations {
    /// `value` of each record averaged over each shape's seeds: one value per shape. The two
    /// seeds of a shape share its problems and its unmasked model, so intervals are over shapes.
    fn per_task(&self, value: impl Fn(&Ablation) -> Option<f64>) -> Vec<f64> {
        means_by_task(
            self.records
                .iter()
                .filter_map(|a| Some((task_of(&a.mask), value(a)?))),
        )
        .into_iter()
        .map(|(_, mean)| mean)
        .collect()
    }

    /// Points lost by removing each module beyond as many random weights (a paired comparison,
    /// each module against its own draws), averaged over each shape's seeds: mean and 95 %
    /// interval over the shapes.
    pub fn excess_loss(&self) -> Interval {
        Interval::t95(&self.per_task(|a| Some(a.excess_loss_points())))
    }

    /// Points lost by removing each module beyond as many weights removed per tensor at
    /// random places, over the modules whose records have the layer-matched draws (averaged
    /// over each shape's seeds, as [`Ablations::excess_loss`]).
    pub fn layer_matched_excess(&self) -> Interval {
        Interval::t95(&self.per_task(Ablation::layer_matched_excess_points))
    }

    /// The finding of [`Ablations::excess_loss`] in words.
    pub fn finding(&self) -> String {
        finding_of(&self.excess_loss(), "as many random weights")
    }

    /// The finding of [`Ablations::layer_matched_excess`] in words.
    pub fn layer_matched_finding(&self) -> String {
        finding_of(
            &self.layer_matched_excess(),
            "as many weights per tensor at random places",
        )
    }

    /// The removals against their chance levels in one paragraph; `masks` is how many masks
    /// there are, measured or not.
    pub fn against_chance(&self, masks: usize) -> String {
        if self.records.is_empty() {
            return format!(
                "The module's removal is not yet measured against chance for these {masks} \
                 masks (`avr mask ablate`; `scripts/study.sh report` runs it)."
            );
        }
        let (tied, n) = tie_counts(self.records.iter().map(|a| &a.module_removed));
        let unmeasured = match masks.saturating_sub(self.records.len()) {
            0 => String::new(),
            k => format!(" ({k} of {masks} masks not yet measured)"),
        };
        // A removal that ties every candidate on every problem leaves no reading of the task:
        // its excess over a random removal then measures the collapse, and says so.
        let reading = match n > 0 && tied == n {
            true => {
                " — which here measures a collapse, not the module's share of the task: \
                     every removal of the module ties all 8 candidates (see below)"
            }
            false => "",
        };
        let mut text = format!(
            "With the module removed, {} correct, and all candidates tied on {tied} of {n} \
             problems; with as many random weights removed ({} draws a mask), {} correct. \
             Excess loss {} points (paired per mask, averaged over each shape's seeds, n shapes): \
             {}{reading}.",
            self.percent(&|a| Some(a.module_removed.expected_accuracy)),
            self.records[0].random_removed.len(),
            self.percent(&|a| Some(a.random_removed_accuracy())),
            self.excess_loss().summary(1),
            self.finding()
        );
        if self.layer_matched_excess().n > 0 {
            let (matched_tied, matched_n) =
                tie_counts(self.records.iter().flat_map(|a| &a.layer_matched_removed));
            // Two removals that both tie (nearly) every candidate leave two collapses to
            // compare, and a difference of zero between them says nothing about the module.
            let finding = match n > 0 && tied == n && matched_tied * 10 >= matched_n * 9 {
                true => format!(
                    "both removals collapse the model, or nearly (this one ties all \
                     candidates on {matched_tied} of {matched_n} problems over its draws; at \
                     90 % or more the comparison counts as between two collapses), so no \
                     verdict is drawn"
                ),
                false => self.layer_matched_finding(),
            };
            text.push_str(&format!(
                " With as many weights removed from each tensor as the module keeps there, at \
                 random places, {} correct: excess loss {} points, {finding}.",
                self.percent(&|a| a.layer_matched_accuracy()),
                self.layer_matched_excess().summary(1),
            ));
        }
        text.push_str(&unmeasured);
        text
    }

    /// `12.5 % [11.0, 14.0] (n = 5)` of `f` over the shapes whose records have it (percent).
    fn percent(&self, f: &dyn Fn(&Ablation) -> Option<f64>) -> String {
        let values: Vec<f64> = self.per_task(|a| f(a).map(|v| 100.0 * v));
        // The unit on the reading, not after the n.
        let summary = Interval::t95(&values).summary(1);
        match summary.split_once(' ') {
            Some((mean, rest)) => format!("{mean} % {rest}"),
            None => format!("{summary} %"),
        }
    }

    /// What the removals have in common, each sentence decided by its counts: how many
    /// modules' removal ties every candidate on every problem (a collapse), how many of those
    /// keep a whole BatchNorm scale, which single tensors already collapse the model, and
    /// whether the two chance levels collapse it too.
    pub fn collapse(&self) -> String {
        let m = self.records.len();
        let collapsed: Vec<&Ablation> = self
            .records
            .iter()
            .filter(|a| collapses(&a.module_removed))
            .collect();
        let c = collapsed.len();
        if c == 0 {
            return format!(
                "Removing the module leaves scores that depend on the candidate for all {m} \
                 measured modules: its accuracy is a reading of the task, not a collapse."
            );
        }
        let whole_norm = collapsed
            .iter()
            .filter(|a| a.whole_tensors.iter().any(|t| is_norm_scale(t)))
            .count();
        let mut text = format!(
            "Removing the module ties all 8 candidates on every problem for {c} of {m} \
             measured modules: their scores no longer depend on the candidate, so their 12.5 % \
             is a collapse, not a measure of how much of the task the module carries. \
             {whole_norm} of these {c} keep a BatchNorm scale whole (a zero scale makes its \
             layer's output the same for every input).{}",
            single_tensor_collapses(&collapsed)
        );
        let (layer_tied, layer_n) =
            tie_counts(collapsed.iter().flat_map(|a| &a.layer_matched_removed));
        if layer_n > 0 {
            let cause = match layer_tied == layer_n {
                true => {
                    ": the collapse follows from how many weights the module takes from each \
                     tensor, not from which ones"
                }
                false => "",
            };
            text.push_str(&format!(
                " For these modules, removing as many weights from each tensor as the module \
                 keeps there, at random places, ties all candidates on {layer_tied} of \
                 {layer_n} problems over all draws{cause}."
            ));
        }
        let (random_tied, random_n) = tie_counts(collapsed.iter().flat_map(|a| &a.random_removed));
        text.push_str(&match random_tied {
            0 => format!(
                " Removing as many weights anywhere at random ties no problem's candidates \
                 ({random_n} problems over all draws): it is the comparison that does not \
                 collapse."
            ),
            t => format!(
                " Removing as many weights anywhere at random ties all candidates on {t} of \
                 {random_n} problems over all draws."
            ),
        });
        text
    }

    /// One row per module: kept %, accuracy unmasked, module only, module removed and random
    /// removal (ties broken at random), ties, excess loss.
    pub fn table(&self) -> Result<Table> {
        let r = &self.records;
        let pct =
            |f: &dyn Fn(&Ablation) -> f64| -> Vec<f64> { r.iter().map(|a| 100.0 * f(a)).collect() };
        let df = df!(
            "mask" => r.iter().map(|a| a.mask.clone()).collect::<Vec<_>>(),
            "kept_%" => pct(&|a| a.kept as f64 / a.total.max(1) as f64),
            "unmasked_%" => pct(&|a| a.unmasked.expected_accuracy),
            "module_only_%" => pct(&|a| a.module_only.expected_accuracy),
            "module_removed_%" => pct(&|a| a.module_removed.expected_accuracy),
            "all_tied_when_removed" => r.iter().map(|a| a.module_removed.all_tied as u32).collect::<Vec<_>>(),
            "random_removal_%" => pct(&|a| a.random_removed_accuracy()),
            "excess_loss_points" => r.iter().map(Ablation::excess_loss_points).collect::<Vec<_>>(),
            "layer_matched_%" => r.iter().map(|a| a.layer_matched_accuracy().map(|v| 100.0 * v)).collect::<Vec<_>>(),
            "layer_matched_excess_points" => r.iter().map(Ablation::layer_matched_excess_points).collect::<Vec<_>>(),
            "n" => r.iter().map(|a| a.module_removed.n as u32).collect::<Vec<_>>(),
        )?;
        Ok(Table::new(df).with_caption(format!(
            "Removing each module against removing as many weights anywhere at random, and as \
             many per tensor at random places (ties broken at random; chance 12.5 %). {}",
            self.against_chance(r.len())
        )))
    }

    /// Inline display: the table.
    pub fn evcxr_display(&self) {
        match self.table() {
            Ok(t) => t.evcxr_display(),
            Err(_) => println!("{self:?}"),
        }
    }
}

/// Whether a reading has all candidates tied on every problem: no answer at all.
fn collapses(r: &AblatedAccuracy) -> bool {
    r.n > 0 && r.all_tied == r.n
}

/// A BatchNorm scale (`….bn.N.weight`): zeroing it makes its layer's output its bias.
fn is_norm_scale(name: &str) -> bool {
    name.contains(".bn.") && name.ends_with(".weight")
}

/// `(problems with all candidates tied, problems)` over `readings`.
fn tie_counts<'a>(readings: impl Iterator<Item = &'a AblatedAccuracy>) -> (usize, usize) {
    readings.fold((0, 0), |(t, n), r| (t + r.all_tied, n + r.n))
}

/// Which tensors' module weights, removed alone, already tie every candidate, and in how many
/// of the `collapsed` modules (empty when none has the probe).
fn single_tensor_collapses(collapsed: &[&Ablation]) -> String {
    let probed = collapsed
        .iter()
        .filter_map(|a| a.collapsing_tensors.as_ref())
        .collect::<Vec<_>>();
    if probed.is_empty() {
        return String::new();
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for name in probed.iter().copied().flatten() {
        match counts.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name.clone(), 1)),
        }
    }
    let with = probed.iter().filter(|t| !t.is_empty()).count();
    let list = counts
        .iter()
        .map(|(n, c)| format!("`{n}` {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    match with {
        0 => format!(
            " In none of the {} probed modules does removing its weights in one tensor alone \
             tie the candidates: the collapse takes several tensors together.",
            probed.len()
        ),
        _ => format!(
            " In {with} of the {} probed modules, removing its weights in one tensor alone \
             already ties every candidate (the tensors, with how many modules: {list}); in the \
             other {} no single tensor does, the collapse takes several together.",
            probed.len(),
            probed.len() - with
        ),
    }
}

/// An interval of excess losses (points) against removing `than`, in words.
fn finding_of(excess: &Interval, than: &str) -> String {
    match (excess.n >= 2, excess.excludes(0.0)) {
        (false, _) => format!("{} shape(s): no test against removing {than}", excess.n),
        (true, true) if excess.mean > 0.0 => {
            format!("removing the module costs significantly more than removing {than}")
        }
        (true, true) => {
            format!("removing the module costs significantly less than removing {than}")
        }
        (true, false) => {
            format!("no significant difference between removing the module and removing {than}")
        }
    }
}

/// The ablation of every shape mask of `set` on `ckpt`, each read on its own shape's held-out
/// problems in `tasks`.
pub fn ablate_shapes(
    ckpt: &Checkpoint,
    set: &MaskSet,
    tasks: &TaskSets,
    cfg: &AblationConfig,
) -> Result<Ablations> {
    let records = set
        .runs
        .iter()
        .filter_map(|run| run.provenance.shape.map(|shape| (run, shape)))
        .map(|(run, shape)| ablate(ckpt, &run.mask, tasks.task(shape)?.held_out, cfg))
        .collect::<Result<Vec<_>>>()?;
    Ok(Ablations { records })
}

/// The ablation of `mask` on `ckpt`, read on `held_out` (at most `cfg.problems` problems).
pub fn ablate(
    ckpt: &Checkpoint,
    mask: &Mask,
    held_out: &AvrDataset,
    cfg: &AblationConfig,
) -> Result<Ablation> {
    if cfg.draws == 0 {
        return Err(Error::Config(format!(
            "ablating {}: the chance levels need at least one draw",
            mask.name
        )));
    }
    let data = held_out.spread(cfg.problems);
    if data.is_empty() {
        return Err(Error::NotEnough(format!(
            "ablating {}: {} has no held-out problems",
            mask.name,
            held_out.root.display()
        )));
    }
    let base = &ckpt.model.params;
    mask.check_fits(base)?;
    let opts = EvalOptions {
        batch_size: 32,
        device: ckpt.model.device(),
    };
    let read = |params: &Params| -> Result<AblatedAccuracy> {
        Ok((&evaluate_with(&ckpt.model, params, &data, &opts)?).into())
    };
    let (kept, total) = mask.kept();
    let mut rng = Rng::new(cfg.seed).fork("ablation");
    let random_removed = (0..cfg.draws)
        .map(|_| read(&zeroed(base, &anywhere(mask, kept as usize, &mut rng))?))
        .collect::<Result<Vec<_>>>()?;
    let module = mask.bits(Binarize::Threshold, &mut rng)?;
    let layer_matched_removed = (0..cfg.draws)
        .map(|_| read(&zeroed(base, &module.shuffled(&mut rng))?))
        .collect::<Result<Vec<_>>>()?;
    let probe = data.spread(COLLAPSE_PROBE_PROBLEMS);
    Ok(Ablation {
        format: ABLATION_FORMAT,
        mask: mask.name.clone(),
        config: *cfg,
        kept,
        total,
        whole_tensors: whole_tensors(mask),
        collapsing_tensors: Some(collapsing_tensors(ckpt, &module, &probe, &opts)?),
        unmasked: read(base)?,
        module_only: read(&mask.apply(base, false)?)?,
        module_removed: read(&mask.apply(base, true)?)?,
        random_removed,
        layer_matched_removed,
    })
}

/// The tensors of `module` (the mask's bits) whose kept weights, removed alone, tie every
/// candidate of every problem of `probe`.
fn collapsing_tensors(
    ckpt: &Checkpoint,
    module: &MaskBits,
    probe: &AvrDataset,
    opts: &EvalOptions,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for bits in module.tensors.iter().filter(|t| t.kept() > 0) {
        let alone = MaskBits {
            name: module.name.clone(),
            tensors: vec![bits.clone()],
        };
        let params = zeroed(&ckpt.model.params, &alone)?;
        let r = evaluate_with(&ckpt.model, &params, probe, opts)?;
        if collapses(&(&r).into()) {
            out.push(bits.name.clone());
        }
    }
    Ok(out)
}

/// The masked tensors whose every weight the mask keeps.
pub fn whole_tensors(mask: &Mask) -> Vec<String> {
    mask.logits
        .iter()
        .filter(|(_, l)| l.le(0.0).sum(Kind::Int64).int64_value(&[]) == 0)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// `removed` of the mask's weights drawn uniformly over all of its tensors together (not per
/// tensor: a per-tensor count would zero the same whole tensors), as bits in the mask's layout.
fn anywhere(mask: &Mask, removed: usize, rng: &mut Rng) -> MaskBits {
    let total = mask.logits.numel();
    let mut drawn = TensorBits::zeros("all", &[total]);
    (0..removed.min(total as usize)).for_each(|i| drawn.set(i));
    let drawn = drawn.shuffled(rng);
    let mut offset = 0;
    let tensors = mask
        .logits
        .iter()
        .map(|(name, l)| {
            let mut bits = TensorBits::zeros(name, &l.size());
            (0..bits.numel)
                .filter(|i| drawn.get(offset + i))
                .for_each(|i| bits.set(i));
            offset += bits.numel;
            bits
        })
        .collect();
    MaskBits {
        name: mask.name.clone(),
        tensors,
    }
}

/// `params` with every weight `removed` marks set to zero; tensors it does not name are shared
/// unchanged.
fn zeroed(params: &Params, removed: &MaskBits) -> Result<Params> {
    let mut out = Params::new();
    for (name, w) in params.iter() {
        let t = match removed.tensors.iter().find(|t| t.name == name) {
            Some(bits) if bits.numel as i64 == w.numel() as i64 => {
                let keep: Vec<f32> = (0..bits.numel)
                    .map(|i| if bits.get(i) { 0.0 } else { 1.0 })
                    .collect();
                let keep = Tensor::from_slice(&keep).view(w.size().as_slice());
                w * keep.to_device(w.device()).to_kind(w.kind())
            }
            Some(bits) => {
                return Err(Error::MaskMismatch {
                    mask: removed.name.clone(),
                    message: format!(
                        "`{name}` has {} weights in the mask but {} in the model",
                        bits.numel,
                        w.numel()
                    ),
                })
            }
            None => w.shallow_clone(),
        };
        out.insert(name, t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_of(values: &[(&str, Vec<f32>)]) -> (Mask, Params) {
        let (mut logits, mut params) = (Params::new(), Params::new());
        for (name, v) in values {
            logits.insert(*name, Tensor::from_slice(v));
            params.insert(
                *name,
                Tensor::ones([v.len() as i64], (Kind::Float, tch::Device::Cpu)),
            );
        }
        (Mask::new("m", logits, None), params)
    }

    #[test]
    fn whole_tensors_are_those_kept_entirely() {
        let (mask, _) = mask_of(&[("a", vec![1.0, 2.0]), ("b", vec![1.0, -1.0])]);
        assert_eq!(whole_tensors(&mask), vec!["a".to_string()]);
    }

    #[test]
    fn a_random_removal_zeroes_exactly_the_count_across_tensors() {
        let (mask, params) = mask_of(&[("a", vec![1.0; 30]), ("b", vec![-1.0; 70])]);
        let mut rng = Rng::new(1);
        let (mut in_a, draws) = (0.0, 200);
        for _ in 0..draws {
            let out = zeroed(&params, &anywhere(&mask, 10, &mut rng)).unwrap();
            let zeros = |n: &str| {
                let t = out.get(n).unwrap();
                t.numel() as f64 - t.sum(Kind::Float).double_value(&[])
            };
            let (za, zb) = (zeros("a"), zeros("b"));
            assert_eq!(za + zb, 10.0);
            in_a += za;
        }
        // Drawn over both tensors together: about 30 % land in `a`.
        let share = in_a / (10.0 * draws as f64);
        assert!((0.25..0.35).contains(&share), "{share}");
    }

    fn ablation_with(removed: f64, tied: usize, random: &[f64]) -> Ablation {
        let reading = |expected_accuracy: f64, tied: usize| AblatedAccuracy {
            accuracy: expected_accuracy,
            expected_accuracy,
            tied,
            all_tied: tied,
            n: 200,
        };
        Ablation {
            format: ABLATION_FORMAT,
            mask: "m".into(),
            config: AblationConfig::default(),
            kept: 10,
            total: 100,
            whole_tensors: vec![],
            collapsing_tensors: None,
            unmasked: reading(0.9, 0),
            module_only: reading(0.85, 0),
            module_removed: reading(removed, tied),
            random_removed: random.iter().map(|&r| reading(r, 0)).collect(),
            layer_matched_removed: vec![],
        }
    }

    #[test]
    fn a_layer_matched_removal_zeroes_the_modules_count_in_each_tensor() {
        let (mask, params) = mask_of(&[
            ("a", vec![1.0, 1.0, -1.0, -1.0]),
            ("b", vec![-1.0, 2.0, -3.0]),
        ]);
        let mut rng = Rng::new(2);
        let bits = mask.bits(Binarize::Threshold, &mut rng).unwrap();
        for _ in 0..20 {
            let out = zeroed(&params, &bits.shuffled(&mut rng)).unwrap();
            let zeros = |n: &str| {
                let t = out.get(n).unwrap();
                t.numel() as f64 - t.sum(Kind::Float).double_value(&[])
            };
            assert_eq!((zeros("a"), zeros("b")), (2.0, 1.0));
        }
    }

    /// One mask per shape (`shape0-s0`, `shape1-s0`, …): the paragraph's unit is the shape.
    fn one_a_shape(records: Vec<Ablation>) -> Ablations {
        let records = records
            .into_iter()
            .enumerate()
            .map(|(i, a)| Ablation {
                mask: format!("shape{i}-s0"),
                ..a
            })
            .collect();
        Ablations { records }
    }

    /// Seeds of one shape are averaged before the interval: 2 seeds of 2 shapes give n = 2.
    #[test]
    fn the_removal_intervals_are_over_shapes() {
        let mut records = vec![
            ablation_with(0.125, 200, &[0.30]),
            ablation_with(0.125, 200, &[0.20]),
            ablation_with(0.125, 200, &[0.26]),
            ablation_with(0.125, 200, &[0.28]),
        ];
        for (a, name) in records.iter_mut().zip(["a-s0", "a-s1", "b-s0", "b-s1"]) {
            a.mask = name.into();
        }
        let excess = Ablations { records }.excess_loss();
        // Shape a: (30 + 20) / 2 − 12.5 = 12.5 points; shape b: 27 − 12.5 = 14.5.
        assert_eq!(excess.n, 2);
        assert!((excess.mean - 13.5).abs() < 1e-9, "{excess:?}");
    }

    /// The finding follows the paired interval of excess losses; unmeasured masks are counted.
    #[test]
    fn the_removal_paragraph_follows_the_paired_test() {
        let costly = one_a_shape(vec![
            ablation_with(0.125, 200, &[0.30, 0.20]),
            ablation_with(0.125, 200, &[0.25, 0.27]),
            ablation_with(0.125, 200, &[0.22, 0.28]),
        ]);
        let text = costly.against_chance(4);
        assert!(text.contains("costs significantly more"), "{text}");
        assert!(text.contains("600 of 600 problems"), "{text}");
        assert!(text.contains("which here measures a collapse"), "{text}");
        assert!(text.contains("(1 of 4 masks not yet measured)"), "{text}");
        let alike = one_a_shape(vec![
            ablation_with(0.30, 0, &[0.25, 0.27]),
            ablation_with(0.20, 0, &[0.22, 0.26]),
            ablation_with(0.26, 0, &[0.25, 0.21]),
        ]);
        let text = alike.against_chance(3);
        assert!(text.contains("no significant difference"), "{text}");
        assert!(!text.contains("not yet measured"), "{text}");
        assert!(!text.contains("collapse"), "{text}");
        let mut layered = costly.clone();
        for a in &mut layered.records {
            a.layer_matched_removed = a
                .random_removed
                .iter()
                .map(|r| AblatedAccuracy {
                    expected_accuracy: 0.125,
                    tied: 200,
                    all_tied: 200,
                    ..*r
                })
                .collect();
        }
        // Both removals tie every candidate: two collapses, no verdict between them.
        let text = layered.against_chance(3);
        assert!(
            text.contains("both removals collapse the model, or nearly (this one ties all candidates on 1200 of 1200")
                && text.contains("so no verdict is drawn")
                && !text.contains("as many weights per tensor at random places, 12.5 % [12.5, 12.5] (n = 3) correct: excess loss 0.0 [0.0, 0.0] (n = 3) points, no significant"),
            "{text}"
        );
        let mut answering = layered.clone();
        for a in &mut answering.records {
            for r in &mut a.layer_matched_removed {
                (r.tied, r.all_tied) = (0, 0);
            }
        }
        let text = answering.against_chance(3);
        assert!(
            text.contains("no significant difference between removing the module and removing as many weights per tensor"),
            "{text}"
        );
        assert!(
            layered
                .collapse()
                .contains("on 1200 of 1200 problems over all draws: the collapse follows"),
            "{}",
            layered.collapse()
        );
        let mut probed = costly.clone();
        probed.records[0].collapsing_tensors = Some(vec!["visual.bn.3.weight".into()]);
        probed.records[1].collapsing_tensors = Some(vec![]);
        let text = probed.collapse();
        assert!(
            text.contains("In 1 of the 2 probed modules")
                && text.contains("`visual.bn.3.weight` 1)"),
            "{text}"
        );
        let none = Ablations { records: vec![] };
        assert!(none.against_chance(2).contains("not yet measured"));
        let collapse = costly.collapse();
        assert!(
            collapse.contains("for 3 of 3 measured modules") && collapse.contains("0 of these 3")
        );
        // No collapse: the sentence says so and claims nothing about one.
        let alive = alike.collapse();
        assert!(
            alive.contains("depend on the candidate for all 3") && !alive.contains("12.5 %"),
            "{alive}"
        );
        assert_eq!(costly.table().unwrap().df.height(), 3);
    }
}
