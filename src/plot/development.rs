//! Figures of module development (drawn here so that `analysis` needs no plotting).

use std::collections::BTreeMap;

use super::{line_plot, Line};
use crate::analysis::development::{Development, MaskRecord};
use crate::analysis::masks::mask_stats;
use crate::display::Figure;
use crate::Result;

impl Development {
    /// One line per task: `metric` against the checkpoint's measured accuracy.
    pub fn metric_plot(
        &self,
        title: &str,
        y_label: &str,
        metric: impl Fn(&MaskRecord) -> f64,
    ) -> Result<Figure> {
        let mut by_task: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for r in &self.records {
            if let Some(acc) = r.sidecar.base_accuracy {
                by_task
                    .entry(r.mask.name.clone())
                    .or_default()
                    .push((100.0 * acc, metric(r)));
            }
        }
        let lines: Vec<Line> = by_task
            .into_iter()
            .map(|(task, pts)| {
                Line::new(
                    task,
                    &pts.iter().map(|p| p.0).collect::<Vec<_>>(),
                    &pts.iter().map(|p| p.1).collect::<Vec<_>>(),
                )
            })
            .collect();
        line_plot(
            title,
            "checkpoint validation accuracy (measured, %)",
            y_label,
            &lines,
        )
    }

    /// Kept weights (%) per task against the checkpoint's measured accuracy.
    pub fn sparsity_plot(&self) -> Result<Figure> {
        self.metric_plot("module size over training", "kept weights (%)", |r| {
            100.0 * mask_stats(&r.mask).kept_fraction
        })
    }

    /// Dispersity per task against the checkpoint's measured accuracy.
    pub fn dispersity_plot(&self) -> Result<Figure> {
        self.metric_plot("module dispersity over training", "dispersity", |r| {
            mask_stats(&r.mask).dispersity
        })
    }
}
