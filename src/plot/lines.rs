//! Line plots: training curves, module development over checkpoints.

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::style::{append_to_svg, Legend, Mark};
use super::{Figure, Style};
use crate::{Error, Result};

/// One named line of `(x, y)` points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The legend entry (unnamed lines get none).
    pub name: String,
    /// The points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

impl Line {
    /// A series from parallel `x` and `y` values.
    pub fn new(name: impl Into<String>, xs: &[f64], ys: &[f64]) -> Self {
        Line {
            name: name.into(),
            points: xs.iter().copied().zip(ys.iter().copied()).collect(),
        }
    }
}

/// A shaded band `(x, low, high)` drawn behind the line of the same index (e.g. a null model's
/// mean ± 2 sd at each x).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// The band's corners, in x order.
    pub points: Vec<(f64, f64, f64)>,
}

/// Range covering all finite values with 5 % padding (a flat range is widened by ±1).
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if hi - lo < 1e-12 {
        return (lo - 1.0)..(hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad)..(hi + pad)
}

/// Draws `series` as lines with markers, axis labels and a title; the legend (when any series
/// is named) sits in a band below the chart, never over the data.
pub fn line_plot(title: &str, x_label: &str, y_label: &str, series: &[Line]) -> Result<Figure> {
    line_plot_with_bands(title, x_label, y_label, series, &[])
}

/// [`line_plot`] with `bands[i]` shaded behind `series[i]` in its colour (fewer bands than
/// series leave the rest unshaded).
pub fn line_plot_with_bands(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Line],
    bands: &[Band],
) -> Result<Figure> {
    line_plot_with_bands_in(title, x_label, y_label, series, bands, None)
}

/// [`line_plot_with_bands`] on a fixed y range (e.g. 0–100 for accuracies, where a range fitted
/// to values that all sit at chance would magnify rounding into slopes); `None` fits the data.
pub fn line_plot_with_bands_in(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Line],
    bands: &[Band],
    y_range: Option<std::ops::Range<f64>>,
) -> Result<Figure> {
    let style = Style::default();
    let x_range = padded_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let band_ys = bands
        .iter()
        .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2]));
    let y_range = y_range.unwrap_or_else(|| {
        padded_range(
            series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .chain(band_ys),
        )
    });
    let legend = Legend {
        entries: series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.name.is_empty())
            .map(|(i, s)| (s.name.clone(), Style::color(i)))
            .collect(),
        mark: Mark::Line,
        font_size: style.label_size,
    };
    let band = legend.height(style.width);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (style.width, style.height + band))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, _) = root.split_vertically(style.height);
        let mut chart = ChartBuilder::on(&top)
            .caption(title, ("sans-serif", style.title_size))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range, y_range)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", style.label_size))
            .draw()
            .map_err(plot_err)?;
        for (i, band) in bands
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.points.is_empty())
        {
            let outline: Vec<(f64, f64)> = band
                .points
                .iter()
                .map(|p| (p.0, p.2))
                .chain(band.points.iter().rev().map(|p| (p.0, p.1)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    Style::color(i).mix(0.18).filled(),
                )))
                .map_err(plot_err)?;
        }
        for (i, s) in series.iter().enumerate() {
            let color = Style::color(i);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    append_to_svg(&mut svg, &legend.svg(style.width, style.height));
    Ok(Figure::new(title, svg))
}

/// Converts any plotters drawing error into the library error.
pub(crate) fn plot_err<E: std::fmt::Display>(e: E) -> Error {
    Error::Plot(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_plot_svg_contains_title_labels_and_legend() {
        let s = vec![
            Line::new("train", &[0.0, 1.0, 2.0], &[0.1, 0.5, 0.9]),
            Line::new("val", &[0.0, 1.0, 2.0], &[0.1, 0.4, 0.7]),
        ];
        let fig = line_plot("Accuracy over steps", "step", "accuracy", &s).unwrap();
        assert!(fig.svg.starts_with("<svg"), "{}", &fig.svg[..50]);
        for text in ["Accuracy over steps", "step", "accuracy", "train", "val"] {
            assert!(
                fig.svg.lines().any(|l| l.trim() == text),
                "missing text element {text}"
            );
        }
        // 6 data markers, then the legend (one marker per series) after the chart.
        let (chart, legend) = fig.svg.split_once("<g class=\"avr-legend\">").unwrap();
        assert_eq!(chart.matches("<circle").count(), 6);
        assert_eq!(legend.matches("<circle").count(), 2);
    }
}
