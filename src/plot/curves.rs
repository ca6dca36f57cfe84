//! Training curves of SCL and mask runs, and the inline displays of those runs.

use super::{line_plot, Line};
use crate::display::Figure;
use crate::masking::engine::{MaskMetricRow, MaskRun};
use crate::train::trainer::{MetricRow, TrainRun};
use crate::Result;

/// Loss, and train / validation accuracy in %, against step (two figures side by side: the
/// loss is on its own scale). Loss and training accuracy are averaged over every `every` steps
/// (one batch each is noisy; 1 plots every step); `validation` labels the validation readings.
pub fn training_curves(
    title: &str,
    metrics: &[MetricRow],
    every: usize,
    validation: &str,
) -> Result<Figure> {
    let every = every.max(1);
    let chunks: Vec<&[MetricRow]> = metrics.chunks(every).collect();
    let mean =
        |c: &[MetricRow], f: fn(&MetricRow) -> f64| c.iter().map(f).sum::<f64>() / c.len() as f64;
    let steps: Vec<f64> = chunks.iter().map(|c| c[c.len() - 1].step as f64).collect();
    let loss: Vec<f64> = chunks.iter().map(|c| mean(c, |r| r.train_loss)).collect();
    let train: Vec<f64> = chunks
        .iter()
        .map(|c| 100.0 * mean(c, |r| r.train_accuracy))
        .collect();
    let (val_steps, val): (Vec<f64>, Vec<f64>) = metrics
        .iter()
        .filter_map(|r| r.val_accuracy.map(|v| (r.step as f64, 100.0 * v)))
        .unzip();
    let (loss_title, train_label) = match every {
        1 => ("Training loss".to_string(), "train (batch)".to_string()),
        n => (
            format!("Training loss (mean of {n} steps)"),
            format!("train (mean of {n} batches)"),
        ),
    };
    let loss_fig = line_plot(
        &loss_title,
        "step",
        "cross-entropy",
        &[Line::new("train", &steps, &loss)],
    )?;
    let acc_fig = line_plot(
        "Accuracy %",
        "step",
        "accuracy %",
        &[
            Line::new(train_label, &steps, &train),
            Line::new(validation, &val_steps, &val),
        ],
    )?;
    Ok(Figure::side_by_side(title, &[loss_fig, acc_fig]))
}

/// The averaging window that draws a log of `steps` steps with at most ~500 points: 1, 10, 50,
/// 100, 250, 500 or 1,000 steps.
pub fn readable_window(steps: usize) -> usize {
    [1, 10, 50, 100, 250, 500]
        .into_iter()
        .find(|&w| steps / w <= 500)
        .unwrap_or(1000)
}

impl TrainRun {
    /// Loss vs step, and train / validation accuracy vs step; a long log averaged over a
    /// [`readable_window`].
    pub fn curves(&self) -> Result<Figure> {
        let every = readable_window(self.metrics.len());
        training_curves("Training curves", &self.metrics, every, "validation")
    }

    /// Inline display: the training curves.
    pub fn evcxr_display(&self) {
        match self.curves() {
            Ok(f) => f.evcxr_display(),
            Err(e) => println!("{self:?} (curves unavailable: {e})"),
        }
    }
}

impl MaskRun {
    /// Task, control and inverted-mask accuracy (deterministic mask) over training, and the
    /// kept fraction, in %.
    pub fn curves(&self) -> Result<Figure> {
        let evals: Vec<&MaskMetricRow> = self
            .metrics
            .iter()
            .filter(|r| r.task_accuracy.is_some())
            .collect();
        let series = |name: &str, f: fn(&MaskMetricRow) -> Option<f64>| {
            let (xs, ys): (Vec<f64>, Vec<f64>) = evals
                .iter()
                .filter_map(|r| f(r).map(|y| (r.step as f64, 100.0 * y)))
                .unzip();
            Line::new(name, &xs, &ys)
        };
        line_plot(
            &format!("mask training — {}", self.mask.name),
            "step",
            "% (accuracy with l > 0; kept weights)",
            &[
                series("task", |r| r.task_accuracy),
                series("control (originals)", |r| r.control_accuracy),
                series("inverted, task", |r| r.inverted_task_accuracy),
                series("inverted, control", |r| r.inverted_control_accuracy),
                series("kept weights", |r| r.kept_fraction),
            ],
        )
    }

    /// Inline display: the training curves.
    pub fn evcxr_display(&self) {
        match self.curves() {
            Ok(f) => f.evcxr_display(),
            Err(e) => println!("{e}"),
        }
    }
}

impl crate::masking::set::MaskSet {
    /// Every mask's training curves, side by side.
    pub fn curves(&self) -> Result<Figure> {
        let figures = self
            .runs
            .iter()
            .map(MaskRun::curves)
            .collect::<Result<Vec<_>>>()?;
        Ok(Figure::side_by_side(
            format!("mask training on {}", self.checkpoint),
            &figures,
        ))
    }
}

/// The sharing heatmap of a mask set (IoMin after the study's preprocessing), titled with the
/// base checkpoint's measured accuracy.
pub fn plot_sharing_matrix(masks: &crate::masking::set::MaskSet) -> Result<Figure> {
    let matrix = masks.sharing(crate::masking::overlap::Overlap::IoMin)?;
    super::sharing_heatmap(&matrix, masks.base_accuracy)
}

impl crate::masking::engine::AlphaSweep {
    /// The α curve: kept weights and validation task accuracy (deterministic mask), in %,
    /// against log₁₀ α; the chosen α is named in the title.
    pub fn curve(&self) -> Result<Figure> {
        let x: Vec<f64> = self.runs.iter().map(|r| r.config.alpha.log10()).collect();
        let last = |f: fn(&MaskMetricRow) -> Option<f64>| -> Vec<f64> {
            self.runs
                .iter()
                .map(|r| r.last(f).map_or(f64::NAN, |v| 100.0 * v))
                .collect()
        };
        let title = format!(
            "α curve (chosen α = {:e}: the largest within {:.0} points of the smallest α)",
            self.chosen_alpha(),
            100.0 * self.tolerance
        );
        line_plot(
            &title,
            "log10 α",
            "%",
            &[
                Line::new("kept weights", &x, &last(|m| m.kept_fraction)),
                Line::new("task accuracy (validation)", &x, &last(|m| m.task_accuracy)),
                Line::new(
                    "inverted task accuracy",
                    &x,
                    &last(|m| m.inverted_task_accuracy),
                ),
            ],
        )
    }
}
