//! Specificity of shape modules: does the mask of shape s do s's task better than t's, and how
//! much of it lies inside the control mask trained on every shape pooled (Csordás et al.'s
//! "full" mask) — the part every shape needs — against the count-matched chance level.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::chance::{ChanceConfig, ChanceLevel};
use crate::checkpoint::{Checkpoint, RecordedAccuracy};
use crate::data::AvrDataset;
use crate::display::Table;
use crate::masking::bits::MaskBits;
use crate::masking::set::TaskSets;
use crate::masking::Mask;
use crate::rng::Rng;
use crate::train::eval::{evaluate, evaluate_with, EvalOptions};
use crate::Result;

/// Every shape mask on every shape's held-out task, kept and inverted, beside the unmasked model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrossShape {
    /// The masks, in row order.
    pub masks: Vec<String>,
    /// The task sets, in column order.
    pub tasks: Vec<String>,
    /// `masked[s][t]`: the model under mask s on task t.
    pub masked: Vec<Vec<RecordedAccuracy>>,
    /// `inverted[s][t]`: the model under 1 − mask s on task t.
    pub inverted: Vec<Vec<RecordedAccuracy>>,
    /// The unmasked model on each task.
    pub unmasked: Vec<RecordedAccuracy>,
}

/// [`CrossShape`] of `masks` (one per shape of `tasks`, in any order) on the held-out problems
/// of every shape of `tasks` (at most `problems` each, evenly spread; 0 = all).
pub fn cross_shape(
    ckpt: &Checkpoint,
    masks: &[Mask],
    tasks: &TaskSets,
    problems: usize,
) -> Result<CrossShape> {
    let opts = EvalOptions {
        batch_size: 32,
        device: ckpt.model.device(),
    };
    let sets: Vec<(String, AvrDataset)> = tasks
        .shapes
        .iter()
        .map(|(shape, _, held_out)| (shape.to_string(), held_out.spread(problems)))
        .collect();
    let read = |report: crate::train::eval::EvalReport, data: &AvrDataset| {
        report.recorded(&data.root.display().to_string(), vec!["held-out".into()])
    };
    let unmasked = sets
        .iter()
        .map(|(_, d)| Ok(read(evaluate(&ckpt.model, d, &opts)?, d)))
        .collect::<Result<Vec<_>>>()?;
    let under = |mask: &Mask, invert: bool| -> Result<Vec<RecordedAccuracy>> {
        let params = mask.apply(&ckpt.model.params, invert)?;
        sets.iter()
            .map(|(_, d)| Ok(read(evaluate_with(&ckpt.model, &params, d, &opts)?, d)))
            .collect()
    };
    Ok(CrossShape {
        masks: masks.iter().map(|m| m.name.clone()).collect(),
        tasks: sets.iter().map(|s| s.0.clone()).collect(),
        masked: masks
            .iter()
            .map(|m| under(m, false))
            .collect::<Result<_>>()?,
        inverted: masks
            .iter()
            .map(|m| under(m, true))
            .collect::<Result<_>>()?,
        unmasked,
    })
}

impl CrossShape {
    /// One row per mask: its accuracy on every task (kept / inverted), each with its 95 %
    /// interval, and the unmasked model's as the last row.
    pub fn table(&self) -> Result<Table> {
        let mut columns = vec![Column::new(
            "mask".into(),
            self.masks
                .iter()
                .cloned()
                .chain(["unmasked".to_string()])
                .collect::<Vec<_>>(),
        )];
        for (t, task) in self.tasks.iter().enumerate() {
            let cells: Vec<String> = (0..self.masks.len())
                .map(|s| {
                    format!(
                        "{} / inv {:.1}",
                        self.masked[s][t].summary(),
                        100.0 * self.inverted[s][t].accuracy
                    )
                })
                .chain([self.unmasked[t].summary()])
                .collect();
            columns.push(Column::new(format!("on {task}").into(), cells));
        }
        Ok(Table::new(DataFrame::new_infer_height(columns)?).with_caption(
            "specificity: each mask (row) on each shape's held-out problems (column), kept and \
             inverted; the last row is the unmasked model",
        ))
    }

    /// Inline display: the table.
    pub fn evcxr_display(&self) {
        match self.table() {
            Ok(t) => t.evcxr_display(),
            Err(e) => println!("{e}"),
        }
    }
}

/// How much of a shape module lies inside the control mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InsideControl {
    /// The shape mask.
    pub mask: String,
    /// Its kept weights.
    pub kept: u64,
    /// Of those, inside the control mask.
    pub inside: u64,
    /// `inside / kept` (percent) against the count-matched null (both masks shuffled within
    /// each tensor).
    pub inside_percent: ChanceLevel,
}

/// Each mask's part inside and outside `control` (binarised by `cfg`), with its chance level.
pub fn inside_control(
    masks: &[Mask],
    control: &Mask,
    cfg: &ChanceConfig,
) -> Result<Vec<InsideControl>> {
    let mut rng = Rng::new(cfg.seed).fork("inside control");
    let control_bits = control.bits(cfg.binarize, &mut rng)?;
    masks
        .iter()
        .map(|m| {
            let pair = vec![control_bits.clone(), m.bits(cfg.binarize, &mut rng)?];
            let bits = MaskBits::in_one_layout(pair)?.remove(1);
            let share = |a: &MaskBits, c: &MaskBits| {
                let inside: u64 = a
                    .tensors
                    .iter()
                    .zip(&c.tensors)
                    .map(|(x, y)| x.both(y))
                    .sum();
                (inside, 100.0 * inside as f64 / a.kept().max(1) as f64)
            };
            let (inside, observed) = share(&bits, &control_bits);
            let null: Vec<f64> = (0..cfg.draws)
                .map(|_| share(&bits.shuffled(&mut rng), &control_bits.shuffled(&mut rng)).1)
                .collect();
            Ok(InsideControl {
                mask: m.name.clone(),
                kept: bits.kept(),
                inside,
                inside_percent: ChanceLevel::of(&[observed], &null),
            })
        })
        .collect()
}
