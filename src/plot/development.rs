//! Figures of module development (drawn here so that `analysis` needs no plotting).

use std::collections::BTreeMap;

use super::{line_plot, Line};
use crate::analysis::development::{Development, MaskRecord};
use crate::analysis::masks::mask_stats;
use crate::display::Figure;
use crate::Result;

impl Development {
    /// One line per task: `metric` (the mean over seeds) against the checkpoint's accuracy —
    /// the held-out test reading when every checkpoint has one ([`Development::x_label`]).
    pub fn metric_plot(
        &self,
        title: &str,
        y_label: &str,
        metric: impl Fn(&MaskRecord) -> f64,
    ) -> Result<Figure> {
        let x_of: BTreeMap<String, f64> = self
            .checkpoints()
            .into_iter()
            .filter_map(|(c, a)| a.map(|a| (c, 100.0 * a)))
            .collect();
        let mut lines: Vec<Line> = Vec::new();
        for task in self.tasks() {
            let points: Vec<(f64, f64)> = self
                .over_seeds(&|r| metric(r))
                .into_iter()
                .filter(|(_, t, _)| *t == task)
                .filter_map(|(c, _, i)| x_of.get(&c).map(|&x| (x, i.mean)))
                .collect();
            let (xs, ys): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
            lines.push(Line::new(task, &xs, &ys));
        }
        line_plot(title, self.x_label(), y_label, &lines)
    }

    /// Kept weights (%) per task (mean over seeds) against the checkpoint's accuracy.
    pub fn sparsity_plot(&self) -> Result<Figure> {
        self.metric_plot("module size over training", "kept weights (%)", |r| {
            100.0 * mask_stats(&r.mask).kept_fraction
        })
    }

    /// Dispersity per task (mean over seeds) against the checkpoint's accuracy, beside its
    /// chance level: the dispersity of the same per-tensor counts placed at random.
    pub fn dispersity_plot(&self) -> Result<Figure> {
        let observed =
            self.metric_plot("observed", "dispersity", |r| mask_stats(&r.mask).dispersity)?;
        let chance = self.metric_plot("count-matched chance", "dispersity", |r| {
            chance_dispersity(&r.mask)
        })?;
        Ok(Figure::side_by_side(
            "module dispersity over training, observed (left) and at chance (right)",
            &[observed, chance],
        ))
    }
}

/// The mean dispersity of `mask`'s per-tensor counts placed at random (100 seeded draws).
fn chance_dispersity(mask: &crate::masking::Mask) -> f64 {
    let cfg = crate::analysis::chance::ChanceConfig::default().with_draws(100);
    crate::analysis::chance::dispersity_chance(std::slice::from_ref(mask), &cfg)
        .ok()
        .and_then(|mut d| d.pop())
        .map_or(f64::NAN, |d| d.dispersity.null_mean)
}
