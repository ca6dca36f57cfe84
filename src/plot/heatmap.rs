//! Sharing-matrix heatmap: annotated cells, a colour bar, the checkpoint accuracy in the title.

use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::lines::plot_err;
use super::{Figure, Style};
use crate::analysis::SharingMatrix;
use crate::Result;

/// Colour of a percentage (0–100) on the shared scale.
fn colour(v: f64) -> RGBColor {
    ViridisRGB::get_color_normalized(v.clamp(0.0, 100.0), 0.0, 100.0)
}

/// Heatmap of `matrix` (values in percent, scale fixed to 0–100 so figures compare).
/// `accuracy` (in percent) is the checkpoint's *measured* accuracy, shown in the title.
pub fn sharing_heatmap(matrix: &SharingMatrix, accuracy: Option<f64>) -> Result<Figure> {
    let style = Style::default();
    let n = matrix.names.len();
    let title = match accuracy {
        Some(a) => format!(
            "Model accuracy: {a:.1} % — {:?}{}",
            matrix.metric,
            if matrix.preprocessed {
                " (preprocessed)"
            } else {
                ""
            }
        ),
        None => format!(
            "Sharing ({:?}{})",
            matrix.metric,
            if matrix.preprocessed {
                ", preprocessed"
            } else {
                ""
            }
        ),
    };
    let short: Vec<String> = matrix
        .names
        .iter()
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (style.width, style.width * 3 / 4))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (main, bar) = root.split_horizontally(style.width - 90);
        let mut chart = ChartBuilder::on(&main)
            .caption(&title, ("sans-serif", style.title_size))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0..n, 0..n)
            .map_err(plot_err)?;
        let label = |i: &usize| short.get(*i).cloned().unwrap_or_default();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&label)
            .y_label_formatter(&|i: &usize| {
                short
                    .get(n.saturating_sub(1 + *i))
                    .cloned()
                    .unwrap_or_default()
            })
            .label_style(("sans-serif", style.label_size))
            .draw()
            .map_err(plot_err)?;
        // Row 0 at the top, like seaborn.
        chart
            .draw_series(
                (0..n)
                    .flat_map(|i| (0..n).map(move |j| (i, j)))
                    .map(|(i, j)| {
                        Rectangle::new(
                            [(j, n - 1 - i), (j + 1, n - i)],
                            colour(matrix.matrix[i][j]).filled(),
                        )
                    }),
            )
            .map_err(plot_err)?;
        chart
            .draw_series(
                (0..n)
                    .flat_map(|i| (0..n).map(move |j| (i, j)))
                    .map(|(i, j)| {
                        let v = matrix.matrix[i][j];
                        let ink = if v > 60.0 { BLACK } else { WHITE };
                        Text::new(
                            format!("{v:.1}"),
                            (j, n - i),
                            ("sans-serif", style.label_size).into_font().color(&ink),
                        )
                    }),
            )
            .map_err(plot_err)?;
        let mut scale = ChartBuilder::on(&bar)
            .margin_top(50)
            .margin_bottom(50)
            .margin_right(10)
            .y_label_area_size(40)
            .build_cartesian_2d(0..1, 0..100)
            .map_err(plot_err)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc("%")
            .label_style(("sans-serif", style.label_size))
            .draw()
            .map_err(plot_err)?;
        scale
            .draw_series(
                (0..100)
                    .map(|v| Rectangle::new([(0, v), (1, v + 1)], colour(v as f64 + 0.5).filled())),
            )
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Figure::new(title, svg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Overlap;

    #[test]
    fn heatmap_svg_has_title_labels_annotations_and_colour_bar() {
        let m = SharingMatrix {
            names: vec!["L/circles".into(), "L/squares".into()],
            matrix: vec![vec![100.0, 42.25], vec![42.25, 100.0]],
            metric: Overlap::IoMin,
            preprocessed: true,
            shared_by_all: 7,
        };
        let fig = sharing_heatmap(&m, Some(87.5)).unwrap();
        let texts: Vec<&str> = fig.svg.lines().map(str::trim).collect();
        for t in [
            "Model accuracy: 87.5 % — IoMin (preprocessed)",
            "circles",
            "squares",
            "42.2",
            "100.0",
            "%",
        ] {
            assert!(texts.contains(&t), "missing {t}");
        }
        // 4 cells + 100 colour-bar steps, at least.
        assert!(fig.svg.matches("<rect").count() >= 104);
    }
}
