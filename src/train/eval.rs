//! Accuracy of a model (optionally under a mask) on a dataset, overall and per configuration.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::RecordedAccuracy;
use crate::data::AvrDataset;
use crate::display::Table;
use crate::model::{BnMode, Params, SclModel};
use crate::Result;

/// Evaluation result. Ties between candidates go to the first maximal index, like
/// `torch.argmax` (some fixture files hold pixel-identical candidates). Because a model that
/// scores every candidate alike (say, with the weights it needs removed) would then "answer"
/// index 0 on every problem, ties are also counted and scored as a fair coin would break them.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Fraction correct in [0, 1].
    pub accuracy: f64,
    /// Problems evaluated.
    pub n: usize,
    /// Problems solved.
    pub correct: usize,
    /// Problems whose highest score is shared by two or more candidates.
    pub tied: usize,
    /// Problems whose candidates all share the highest score: no answer at all.
    pub all_tied: usize,
    /// Expected problems solved when ties are broken uniformly at random: a problem counts
    /// `1 / m` when its answer is one of `m` tied maxima.
    pub expected_correct: f64,
    /// `configuration → (correct, n)`.
    pub per_configuration: BTreeMap<String, (usize, usize)>,
    /// Whether each problem was solved, in the dataset's order: two readings of the same
    /// problems (say, two masks) can then be compared problem by problem (a paired test).
    /// Left out of the JSON form, which stays one line of counts.
    #[serde(skip)]
    pub outcomes: Vec<bool>,
}

/// The Wilson score interval (95 %) of `correct` out of `n`: `(low, high)` as fractions.
pub fn wilson_interval(correct: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (z, n_f) = (1.959964, n as f64);
    let p = correct as f64 / n_f;
    let centre = (p + z * z / (2.0 * n_f)) / (1.0 + z * z / n_f);
    let half = z / (1.0 + z * z / n_f) * (p * (1.0 - p) / n_f + z * z / (4.0 * n_f * n_f)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

impl EvalReport {
    /// Accuracy when ties are broken uniformly at random (equals `accuracy` without ties).
    pub fn expected_accuracy(&self) -> f64 {
        self.expected_correct / self.n.max(1) as f64
    }

    /// Fraction of problems with tied maxima.
    pub fn tied_fraction(&self) -> f64 {
        self.tied as f64 / self.n.max(1) as f64
    }

    /// 95 % Wilson interval of the accuracy.
    pub fn interval(&self) -> (f64, f64) {
        wilson_interval(self.correct, self.n)
    }

    /// This reading as stored in a checkpoint's sidecar: `data` and `splits` name what was
    /// evaluated.
    pub fn recorded(&self, data: &str, splits: Vec<String>) -> RecordedAccuracy {
        RecordedAccuracy {
            data: data.into(),
            splits,
            correct: self.correct,
            n: self.n,
            accuracy: self.accuracy,
            interval: self.interval(),
        }
    }

    /// `44.8 % [41.0, 48.7] (n = 500)`, plus the ties when there are any:
    /// `12.0 % [8.2, 17.2] (n = 200; 200 tied, 12.5 % with ties broken at random)`.
    pub fn summary(&self) -> String {
        let (lo, hi) = self.interval();
        let ties = if self.tied > 0 {
            format!(
                "; {} tied, {:.1} % with ties broken at random",
                self.tied,
                100.0 * self.expected_accuracy()
            )
        } else {
            String::new()
        };
        format!(
            "{:.1} % [{:.1}, {:.1}] (n = {}{ties})",
            100.0 * self.accuracy,
            100.0 * lo,
            100.0 * hi,
            self.n
        )
    }

    /// One row per configuration plus `all`.
    pub fn table(&self) -> Result<Table> {
        let mut names: Vec<String> = self.per_configuration.keys().cloned().collect();
        let mut correct: Vec<u32> = self
            .per_configuration
            .values()
            .map(|v| v.0 as u32)
            .collect();
        let mut n: Vec<u32> = self
            .per_configuration
            .values()
            .map(|v| v.1 as u32)
            .collect();
        names.push("all".into());
        correct.push(self.correct as u32);
        n.push(self.n as u32);
        let acc: Vec<f64> = correct
            .iter()
            .zip(&n)
            .map(|(&c, &n)| {
                if n > 0 {
                    100.0 * c as f64 / n as f64
                } else {
                    f64::NAN
                }
            })
            .collect();
        let df =
            df!("configuration" => names, "correct" => correct, "n" => n, "accuracy_%" => acc)?;
        Ok(Table::new(df).with_caption(format!(
            "accuracy {} — 95 % Wilson interval",
            self.summary()
        )))
    }

    /// Inline display: the per-configuration table.
    pub fn evcxr_display(&self) {
        match self.table() {
            Ok(t) => t.evcxr_display(),
            Err(_) => println!("{self:?}"),
        }
    }
}

/// Options for [`evaluate`].
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Problems per forward pass (default 32).
    pub batch_size: usize,
    /// Where to run (default CUDA when available).
    pub device: Device,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: 32,
            device: Device::cuda_if_available(),
        }
    }
}

/// Accuracy of `model` (eval-mode BatchNorm) on every problem of `data`.
pub fn evaluate(model: &SclModel, data: &AvrDataset, opts: &EvalOptions) -> Result<EvalReport> {
    evaluate_with(model, &model.params, data, opts)
}

/// Accuracy of `model`'s architecture with `params` instead of its own — e.g. masked
/// parameters (`Mask::apply`): the caller applies the mask. Panels are prepared the model's way.
pub fn evaluate_with(
    model: &SclModel,
    params: &Params,
    data: &AvrDataset,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let params = params.to_device(opts.device);
    let mut per_configuration: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut tied, mut all_tied, mut expected_correct) = (0, 0, 0.0);
    let mut outcomes = Vec::with_capacity(data.len());
    let indices: Vec<usize> = (0..data.len()).collect();
    let _guard = tch::no_grad_guard();
    for chunk in indices.chunks(opts.batch_size.max(1)) {
        let batch = data.batch(chunk, model.batch_options(), opts.device)?;
        let logits = model.logits_with(&params, &batch.images, BnMode::Eval)?;
        let hits = first_argmax(&logits)
            .eq_tensor(&batch.targets)
            .to_kind(Kind::Int64)
            .to_device(Device::Cpu);
        let ties = TieReading::of(&logits, &batch.targets);
        tied += ties.tied;
        all_tied += ties.all_tied;
        expected_correct += ties.expected_correct;
        for (i, config) in batch.configurations.iter().enumerate() {
            let hit = hits.int64_value(&[i as i64]) == 1;
            let entry = per_configuration.entry(config.clone()).or_default();
            entry.0 += usize::from(hit);
            entry.1 += 1;
            outcomes.push(hit);
        }
    }
    let correct = per_configuration.values().map(|v| v.0).sum();
    let n = per_configuration.values().map(|v| v.1).sum();
    Ok(EvalReport {
        accuracy: if n > 0 {
            correct as f64 / n as f64
        } else {
            0.0
        },
        n,
        correct,
        tied,
        all_tied,
        expected_correct,
        per_configuration,
        outcomes,
    })
}

/// Ties among one batch's maxima: how many problems have them, and the expected hits when a
/// fair coin breaks them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TieReading {
    /// Problems whose maximum is shared by two or more candidates.
    pub tied: usize,
    /// Problems whose candidates all share the maximum.
    pub all_tied: usize,
    /// `Σ [answer is a maximum] / (number of maxima)`.
    pub expected_correct: f64,
}

impl TieReading {
    /// Reads `logits` (`[batch, candidates]`) against `targets` (`[batch]`).
    pub fn of(logits: &Tensor, targets: &Tensor) -> TieReading {
        let maxima = logits.eq_tensor(&logits.amax([-1], true));
        let candidates = logits.size().last().copied().unwrap_or(1) as f64;
        // NaN scores have no maximum: count them as no answer (0), never as NaN.
        let count = maxima
            .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
            .clamp_min(1.0);
        let answer_is_max = maxima
            .gather(-1, &targets.unsqueeze(-1), false)
            .squeeze_dim(-1)
            .to_kind(Kind::Float);
        TieReading {
            tied: count.gt(1.0).sum(Kind::Int64).int64_value(&[]) as usize,
            all_tied: count.ge(candidates).sum(Kind::Int64).int64_value(&[]) as usize,
            expected_correct: (answer_is_max / count).sum(Kind::Double).double_value(&[]),
        }
    }
}

/// Index of the first maximum along the last axis (what `torch.argmax` documents).
pub fn first_argmax(logits: &Tensor) -> Tensor {
    let max = logits.amax([-1], true);
    let n = logits.size()[logits.dim() - 1];
    // Positions of maxima get their index, others n; the minimum is the first maximal index.
    let index = Tensor::arange(n, (Kind::Int64, logits.device())).expand_as(logits);
    index
        .where_self(&logits.eq_tensor(&max), &Tensor::full_like(&index, n))
        .amin([-1], false)
}

#[cfg(test)]
mod tests {
    use super::{wilson_interval, TieReading};
    use tch::Tensor;

    #[test]
    fn ties_are_counted_and_scored_as_a_fair_coin_breaks_them() {
        // Row 0: a clear hit; row 1: all 4 tied (answer among them, 1/4); row 2: the answer
        // is one of 2 maxima (1/2); row 3: 2 tied maxima, answer not among them (0).
        let logits = Tensor::from_slice(&[
            0.1f32, 0.9, 0.2, 0.3, //
            0.5, 0.5, 0.5, 0.5, //
            0.7, 0.1, 0.7, 0.2, //
            0.4, 0.4, 0.1, 0.0,
        ])
        .view([4, 4]);
        let targets = Tensor::from_slice(&[1i64, 3, 2, 3]);
        let r = TieReading::of(&logits, &targets);
        assert_eq!((r.tied, r.all_tied), (3, 1));
        assert!((r.expected_correct - 1.75).abs() < 1e-9, "{r:?}");
        // NaN scores: no maximum, no answer, nothing tied, and no NaN in the count.
        let nan = Tensor::from_slice(&[f32::NAN; 4]).view([1, 4]);
        let r = TieReading::of(&nan, &Tensor::from_slice(&[0i64]));
        assert_eq!((r.tied, r.all_tied, r.expected_correct), (0, 0, 0.0));
    }

    #[test]
    fn wilson_interval_matches_the_textbook_values() {
        // 18 of 24: p = 0.75, Wilson 95 % [0.5506, 0.8800] (Newcombe 1998's formula).
        let (lo, hi) = wilson_interval(18, 24);
        assert!(
            (lo - 0.5506).abs() < 1e-3 && (hi - 0.8800).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson_interval(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-3, "{hi}");
    }
}
