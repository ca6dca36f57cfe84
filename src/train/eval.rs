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
/// `torch.argmax` (some fixture files hold pixel-identical candidates).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Fraction correct in [0, 1].
    pub accuracy: f64,
    /// Problems evaluated.
    pub n: usize,
    /// Problems solved.
    pub correct: usize,
    /// `configuration → (correct, n)`.
    pub per_configuration: BTreeMap<String, (usize, usize)>,
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

    /// `44.8 % [41.0, 48.7] (n = 500)`.
    pub fn summary(&self) -> String {
        let (lo, hi) = self.interval();
        format!(
            "{:.1} % [{:.1}, {:.1}] (n = {})",
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
    let indices: Vec<usize> = (0..data.len()).collect();
    let _guard = tch::no_grad_guard();
    for chunk in indices.chunks(opts.batch_size.max(1)) {
        let batch = data.batch(chunk, model.batch_options(), opts.device)?;
        let logits = model.logits_with(&params, &batch.images, BnMode::Eval)?;
        let hits = first_argmax(&logits)
            .eq_tensor(&batch.targets)
            .to_kind(Kind::Int64)
            .to_device(Device::Cpu);
        for (i, config) in batch.configurations.iter().enumerate() {
            let entry = per_configuration.entry(config.clone()).or_default();
            entry.0 += hits.int64_value(&[i as i64]) as usize;
            entry.1 += 1;
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
        per_configuration,
    })
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
    use super::wilson_interval;

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
