//! Accuracy of a model (optionally under a mask) on a dataset, overall and per configuration.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::dataset::BatchOptions;
use crate::data::AvrDataset;
use crate::display::Table;
use crate::masking::Mask;
use crate::model::{BnMode, SclModel};
use crate::Result;

/// Evaluation result. Ties between candidates go to the first maximal index, like
/// `torch.argmax` (some fixture files hold pixel-identical candidates).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Fraction correct in [0, 1].
    pub accuracy: f64,
    pub n: usize,
    pub correct: usize,
    /// `configuration → (correct, n)`.
    pub per_configuration: BTreeMap<String, (usize, usize)>,
}

impl EvalReport {
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
            "accuracy {:.2} % ({}/{})",
            100.0 * self.accuracy,
            self.correct,
            self.n
        )))
    }

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
    pub batch_size: usize,
    pub batch: BatchOptions,
    /// Use `1 − mask` instead of the mask.
    pub invert_mask: bool,
    pub device: Device,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: 32,
            batch: BatchOptions::default(),
            invert_mask: false,
            device: Device::cuda_if_available(),
        }
    }
}

/// Accuracy of `model` (eval-mode BatchNorm) on every problem of `data`, under `mask` if given.
pub fn evaluate(
    model: &SclModel,
    mask: Option<&Mask>,
    data: &AvrDataset,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let model = model.to_device(opts.device);
    let params = match mask {
        Some(m) => m.apply(&model.params, opts.invert_mask)?,
        None => model.params.clone(),
    };
    let mut per_configuration: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    let _guard = tch::no_grad_guard();
    for chunk in indices.chunks(opts.batch_size.max(1)) {
        let batch = data.batch(chunk, opts.batch, opts.device)?;
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
