//! Figures of module development (drawn here so that `analysis` needs no plotting).

use std::collections::BTreeMap;

use super::lines::Band;
use super::{line_plot_with_bands, Line};
use crate::analysis::development::{Development, MaskRecord};
use crate::analysis::masks::mask_stats;
use crate::analysis::replicates::value_range;
use crate::display::Figure;
use crate::Result;

impl Development {
    /// One line per task: `metric` (the mean over seeds) against the checkpoint's accuracy —
    /// the held-out test reading when every checkpoint has one ([`Development::x_label`]) —
    /// with the range of its seeds shaded behind it (with two seeds a t interval would be
    /// 12.7 standard errors wide; the range shows the seeds themselves).
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
        let (mut lines, mut bands): (Vec<Line>, Vec<Band>) = (Vec::new(), Vec::new());
        for task in self.tasks() {
            let mut points: Vec<(f64, f64)> = Vec::new();
            let mut range: Vec<(f64, f64, f64)> = Vec::new();
            for (ckpt, x) in &x_of {
                let seeds: Vec<f64> = self
                    .replicates(ckpt, &task)
                    .into_iter()
                    .map(&metric)
                    .collect();
                if seeds.is_empty() {
                    continue;
                }
                let mean = seeds.iter().sum::<f64>() / seeds.len() as f64;
                let (low, high) = value_range(seeds.iter().copied());
                points.push((*x, mean));
                range.push((*x, low, high));
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            range.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (xs, ys): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
            lines.push(Line::new(task, &xs, &ys));
            bands.push(Band { points: range });
        }
        line_plot_with_bands(title, self.x_label(), y_label, &lines, &bands)
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

/// The mean dispersity of `mask`'s per-tensor counts placed at random (the default chance
/// configuration's seeded draws, as the report's tests use).
fn chance_dispersity(mask: &crate::masking::Mask) -> f64 {
    let cfg = crate::analysis::chance::ChanceConfig::default();
    crate::analysis::chance::dispersity_chance(std::slice::from_ref(mask), &cfg)
        .ok()
        .and_then(|mut d| d.pop())
        .map_or(f64::NAN, |d| d.dispersity.null_mean)
}
