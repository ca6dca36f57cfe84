//! Figures of module development (drawn here so that `analysis` needs no plotting).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::lines::line_plot_with_bands_in;
use super::lines::Band;
use super::{sharing_chance_heatmap, Line};
use crate::analysis::ablation::{AblatedAccuracy, Ablation};
use crate::analysis::chance::ChanceConfig;
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
        self.metric_plot_in(title, y_label, None, metric)
    }

    /// [`metric_plot`](Self::metric_plot) of a task accuracy (%), on the whole 0–100 range.
    pub fn accuracy_plot(
        &self,
        title: &str,
        metric: impl Fn(&MaskRecord) -> f64,
    ) -> Result<Figure> {
        self.metric_plot_in(title, "task accuracy (%)", Some(0.0..100.0), metric)
    }

    fn metric_plot_in(
        &self,
        title: &str,
        y_label: &str,
        y_range: Option<std::ops::Range<f64>>,
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
                // A seed without the reading (e.g. no ablation record) is left out.
                let seeds: Vec<f64> = self
                    .replicates(ckpt, &task)
                    .into_iter()
                    .map(&metric)
                    .filter(|v| v.is_finite())
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
        line_plot_with_bands_in(title, self.x_label(), y_label, &lines, &bands, y_range)
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

impl Development {
    /// One heatmap per checkpoint with two masks or more, side by side: IoMin against its
    /// chance level as [`Development::study_sharing`] reads it (each title says whether the
    /// masks were preprocessed).
    pub fn sharing_heatmaps(&self, cfg: &ChanceConfig) -> Result<Figure> {
        let heatmaps = self
            .checkpoints()
            .into_iter()
            .filter(|(c, _)| self.masks_at(c) >= 2)
            .map(|(c, _)| {
                let (m, accuracy) = self.study_sharing(&c, cfg)?;
                sharing_chance_heatmap(&m, accuracy)
            })
            .collect::<Result<Vec<Figure>>>()?;
        Ok(Figure::side_by_side("sharing by checkpoint", &heatmaps))
    }

    /// R4 in pictures, per task against the checkpoint's accuracy (seed range shaded): the
    /// masked model's drop from the unmasked model, and the task accuracy (ties broken by a
    /// fair coin; chance 12.5 %) with the module removed beside the same counts removed at
    /// random places inside each tensor (its layer-matched chance level, the mean over draws).
    /// Masks without an ablation record are left out of the last two.
    pub fn ablation_plot(&self) -> Result<Figure> {
        self.ablation_plot_of(&self.ablation_records()?)
    }

    /// [`Development::ablation_plot`] from records already read
    /// ([`Development::ablation_records`]).
    pub fn ablation_plot_of(&self, ablations: &HashMap<PathBuf, Ablation>) -> Result<Figure> {
        let accuracy_of = |pick: fn(&Ablation) -> f64| {
            move |r: &MaskRecord| ablations.get(&r.path).map_or(f64::NAN, |a| 100.0 * pick(a))
        };
        let drop = self.metric_plot("masked model", "drop from unmasked (points)", |r| {
            r.task_drop_points().unwrap_or(f64::NAN)
        })?;
        let removed = self.accuracy_plot(
            "module removed",
            accuracy_of(|a| a.module_removed.expected_accuracy),
        )?;
        let layer_matched = self.accuracy_plot(
            "as many removed at random in each tensor",
            accuracy_of(|a| mean_expected(&a.layer_matched_removed)),
        )?;
        Ok(Figure::side_by_side(
            "ablation over training: the weights outside the module removed (left); the module \
             removed (middle) against its layer-matched chance level (right)",
            &[drop, removed, layer_matched],
        ))
    }
}

/// The mean fair-coin accuracy over ablation draws (NaN for none).
fn mean_expected(draws: &[AblatedAccuracy]) -> f64 {
    draws.iter().map(|d| d.expected_accuracy).sum::<f64>() / draws.len() as f64
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
