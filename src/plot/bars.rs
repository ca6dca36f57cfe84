//! Bar charts on a log axis: the per-tensor share of a module (the study's "spatial
//! distribution", coloured by sub-network) and the histogram of mask probabilities σ(l).

use plotters::prelude::*;

use super::lines::plot_err;
use super::{Figure, Style};
use crate::analysis::masks::{subnetwork, MaskStats};
use crate::masking::Mask;
use crate::{Error, Result};

/// Bars `values` (zeros are skipped: they have no place on a log axis) labelled `labels`,
/// coloured by `groups` (same group, same colour, with a legend).
pub fn log_bar_chart(
    title: &str,
    y_label: &str,
    labels: &[String],
    values: &[f64],
    groups: &[String],
) -> Result<Figure> {
    if labels.len() != values.len() || groups.len() != values.len() {
        return Err(Error::Config(
            "bar chart: labels, values and groups differ in length".into(),
        ));
    }
    let style = Style::default();
    let n = values.len();
    let positive = values.iter().copied().filter(|v| *v > 0.0);
    let lo = positive.clone().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let hi = positive.fold(0.0, f64::max).max(lo * 4.0) * 2.0;
    let mut distinct: Vec<&str> = Vec::new();
    for g in groups {
        if !distinct.contains(&g.as_str()) {
            distinct.push(g);
        }
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(
            &mut svg,
            (style.width.max(14 * n as u32 + 100), style.height),
        )
        .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", style.title_size))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n).into_segmented(), (lo..hi).log_scale())
            .map_err(plot_err)?;
        let label_at = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label_at)
            .y_desc(y_label)
            .label_style(("sans-serif", style.label_size.min(11)))
            .draw()
            .map_err(plot_err)?;
        for (k, group) in distinct.iter().enumerate() {
            let color = Style::color(k);
            chart
                .draw_series(
                    Histogram::vertical(&chart)
                        .style(color.filled())
                        .margin(2)
                        .baseline(lo)
                        .data(
                            values
                                .iter()
                                .zip(groups)
                                .enumerate()
                                .filter(|(_, (v, g))| **v > 0.0 && g.as_str() == *group)
                                .map(|(i, (v, _))| (i, *v)),
                        ),
                )
                .map_err(plot_err)?
                .label(*group)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", style.label_size))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Figure::new(title, svg))
}

/// The study's spatial distribution: for each tensor, the mean over `stats` of its share of the
/// module's kept weights, on a log axis, coloured by sub-network.
pub fn spatial_distribution(title: &str, stats: &[MaskStats]) -> Result<Figure> {
    let first = stats
        .first()
        .ok_or_else(|| Error::Config("spatial distribution needs at least one mask".into()))?;
    let shares: Vec<f64> = (0..first.per_tensor.len())
        .map(|t| {
            stats
                .iter()
                .map(|s| s.per_tensor[t].kept as f64 / s.kept.max(1) as f64)
                .sum::<f64>()
                / stats.len() as f64
        })
        .collect();
    let labels: Vec<String> = first.per_tensor.iter().map(|t| t.label.clone()).collect();
    let groups: Vec<String> = first
        .per_tensor
        .iter()
        .map(|t| subnetwork(&t.name).to_string())
        .collect();
    log_bar_chart(title, "n_i / n_total", &labels, &shares, &groups)
}

/// Histogram of σ(l) over every masked scalar, `bins` equal bins on [0, 1], log counts.
pub fn mask_probability_histogram(mask: &Mask, bins: usize) -> Result<Figure> {
    let bins = bins.max(2);
    let mut counts = vec![0f64; bins];
    for (_, l) in mask.logits.iter() {
        let p: Vec<f32> = Vec::<f32>::try_from(l.sigmoid().flatten(0, -1)).map_err(Error::from)?;
        for v in p {
            counts[((v as f64 * bins as f64) as usize).min(bins - 1)] += 1.0;
        }
    }
    let labels: Vec<String> = (0..bins)
        .map(|b| format!("{:.2}", (b as f64 + 0.5) / bins as f64))
        .collect();
    let groups: Vec<String> = (0..bins)
        .map(|b| {
            if (b as f64 + 0.5) / bins as f64 > 0.5 {
                "kept (σ(l) > 0.5)".into()
            } else {
                "removed".into()
            }
        })
        .collect();
    log_bar_chart(
        &format!("Mask probabilities: {}", mask.name),
        "scalars",
        &labels,
        &counts,
        &groups,
    )
}
