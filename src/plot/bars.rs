//! Bar charts on a log axis: the per-tensor share of a module (the study's "spatial
//! distribution", coloured by sub-network) and the histogram of mask probabilities σ(l).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::lines::plot_err;
use super::style::{append_to_svg, text_width, Legend, Mark, MAX_FIGURE_WIDTH};
use super::{Figure, Style};
use crate::analysis::masks::{subnetwork, MaskStats};
use crate::masking::Mask;
use crate::{Error, Result};

/// Bars `values` (zeros are skipped: they have no place on a log axis) labelled `labels`,
/// coloured by `groups` (same group, same colour). Each label is centred under its bar, turned
/// upright when the labels are wider than the bars (and thinned to every k-th when even upright
/// ones would collide); the legend sits in a band below the chart, never over the bars.
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
    let positive = values.iter().copied().filter(|v| *v > 0.0 && v.is_finite());
    let lo = positive.clone().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let hi = positive.fold(0.0, f64::max).max(lo * 4.0) * 2.0;
    let mut distinct: Vec<&str> = Vec::new();
    for g in groups {
        if !distinct.contains(&g.as_str()) {
            distinct.push(g);
        }
    }
    let legend = Legend {
        entries: distinct
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(k, g)| (g.to_string(), Style::color(k)))
            .collect(),
        mark: Mark::Box,
        font_size: style.label_size,
    };
    let (margin, y_area) = (12u32, 64u32);
    let tick_size = style.label_size.min(11);
    // 14 px a bar, at most MAX_FIGURE_WIDTH wide in all.
    let width = style.width.max(14 * n as u32 + 100).min(MAX_FIGURE_WIDTH);
    let slot = f64::from(width - 2 * margin - y_area) / n.max(1) as f64;
    let widest = labels
        .iter()
        .map(|l| text_width(l, tick_size))
        .max()
        .unwrap_or(0);
    let upright = f64::from(widest) > slot - 4.0;
    // Upright labels need a line's height each: with narrower bars only every k-th is written.
    let every = if upright {
        ((f64::from(tick_size) / 1.24 + 3.0) / slot).ceil().max(1.0) as usize
    } else {
        1
    };
    let x_area = if upright { widest as u32 + 16 } else { 30 };
    let band = legend.height(width);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width, style.height + band)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, _) = root.split_vertically(style.height);
        let mut chart = ChartBuilder::on(&top)
            .caption(title, ("sans-serif", style.title_size))
            .margin(margin)
            .x_label_area_size(x_area)
            .y_label_area_size(y_area)
            .build_cartesian_2d(0f64..n.max(1) as f64, (lo..hi).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_label)
            .label_style(("sans-serif", tick_size))
            .draw()
            .map_err(plot_err)?;
        for (k, group) in distinct.iter().enumerate() {
            let color = Style::color(k);
            chart
                .draw_series(
                    values
                        .iter()
                        .zip(groups)
                        .enumerate()
                        .filter(|(_, (v, g))| **v > 0.0 && v.is_finite() && g.as_str() == *group)
                        .map(|(i, (v, _))| {
                            Rectangle::new(
                                [(i as f64 + 0.1, lo), (i as f64 + 0.9, *v)],
                                color.filled(),
                            )
                        }),
                )
                .map_err(plot_err)?;
        }
        // Tick and label at the centre of each bar's slot.
        let bottom = chart.plotting_area().get_pixel_range().1.end;
        let font = TextStyle::from(("sans-serif", tick_size).into_font());
        let font = if upright {
            font.transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Right, VPos::Center))
        } else {
            font.pos(Pos::new(HPos::Center, VPos::Top))
        };
        for (i, label) in labels.iter().enumerate().step_by(every) {
            let x = chart.backend_coord(&(i as f64 + 0.5, lo)).0;
            root.draw(&PathElement::new(
                vec![(x, bottom), (x, bottom + 4)],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?;
            root.draw(&Text::new(label.clone(), (x, bottom + 6), font.clone()))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    append_to_svg(&mut svg, &legend.svg(width, style.height));
    Ok(Figure::new(title, svg))
}

/// The study's spatial distribution: for each tensor, the mean over `stats` of its share of the
/// module's kept weights, on a log axis, coloured by sub-network.
pub fn spatial_distribution(title: &str, stats: &[MaskStats]) -> Result<Figure> {
    let first = stats
        .first()
        .ok_or_else(|| Error::NotEnough("spatial distribution needs at least one mask".into()))?;
    let differs = |s: &&MaskStats| {
        s.per_tensor.len() != first.per_tensor.len()
            || s.per_tensor
                .iter()
                .zip(&first.per_tensor)
                .any(|(a, b)| a.name != b.name)
    };
    if let Some(other) = stats.iter().find(differs) {
        return Err(Error::MaskMismatch {
            mask: other.name.clone(),
            message: format!("its tensors differ from mask '{}'s", first.name),
        });
    }
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
