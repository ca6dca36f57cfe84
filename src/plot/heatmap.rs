//! Sharing-matrix heatmap: annotated cells, a colour bar, the checkpoint accuracy in the title.

use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::lines::plot_err;
use super::style::text_width;
use super::{Figure, Style};
use crate::analysis::{Overlap, SharingChance, SharingMatrix};
use crate::{Error, Result};

/// Colour of a percentage (0–100) on the shared scale.
fn colour(v: f64) -> RGBColor {
    ViridisRGB::get_color_normalized(v.clamp(0.0, 100.0), 0.0, 100.0)
}

/// The title: the checkpoint accuracy (a fraction in [0, 1], printed in percent) and the metric.
fn title(metric: Overlap, preprocessed: bool, accuracy: Option<f64>) -> Result<String> {
    let metric = format!("{metric:?}");
    Ok(match accuracy {
        Some(a) if !(0.0..=1.0).contains(&a) => {
            return Err(Error::Config(format!(
                "sharing heatmap: accuracy {a} is not a fraction in [0, 1] \
                 (pass the measured accuracy as a fraction, e.g. 0.448 for 44.8 %)"
            )))
        }
        Some(a) => format!(
            "Model accuracy: {:.1} % — {metric}{}",
            100.0 * a,
            if preprocessed { " (preprocessed)" } else { "" }
        ),
        None => format!(
            "Sharing ({metric}{})",
            if preprocessed { ", preprocessed" } else { "" }
        ),
    })
}

/// Axis labels from `names`: the part after the last `/` (`SCL_90/circles` → `circles`) when
/// those are distinct, the full names otherwise, so that no two rows read alike.
fn axis_labels(names: &[String]) -> Vec<String> {
    let short: Vec<String> = names
        .iter()
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
        .collect();
    let distinct = short
        .iter()
        .enumerate()
        .all(|(i, s)| !short[..i].contains(s));
    if distinct {
        short
    } else {
        names.to_vec()
    }
}

/// Heatmap of `matrix` (values in percent, scale fixed to 0–100 so figures compare), row 0 at
/// the top. Every row and column is labelled once, centred on its cells, from `matrix.names`.
/// `accuracy` is the checkpoint's *measured* accuracy as a fraction in [0, 1] (as stored in
/// mask sidecars, `base_accuracy`); the title prints it in percent (0.448 → "44.8 %").
pub fn sharing_heatmap(matrix: &SharingMatrix, accuracy: Option<f64>) -> Result<Figure> {
    let title = title(matrix.metric, matrix.preprocessed, accuracy)?;
    heatmap(title, &matrix.names, &matrix.matrix, None)
}

/// Heatmap of a sharing matrix against chance: each cell shows the observed overlap (colour and
/// first line) and beneath it the count-matched null's mean and the z score, so a value is read
/// against its chance level, not against 0. The title names the binarisation and the draws.
pub fn sharing_chance_heatmap(chance: &SharingChance, accuracy: Option<f64>) -> Result<Figure> {
    let title = format!(
        "{} — {}; beneath: chance, z ({} draws)",
        title(chance.metric, chance.preprocessed, accuracy)?,
        chance.binarisation(),
        chance.draws
    );
    let n = chance.names.len();
    let notes: Vec<Vec<String>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match i == j {
                    true => String::new(),
                    false => format!("{:.1}, z {:.1}", chance.null_mean[i][j], chance.z[i][j]),
                })
                .collect()
        })
        .collect();
    heatmap(title, &chance.names, &chance.matrix, Some(&notes))
}

/// The heatmap itself: `values` in percent on the fixed 0–100 scale, an optional second line of
/// text per cell.
fn heatmap(
    title: String,
    names: &[String],
    values: &[Vec<f64>],
    notes: Option<&[Vec<String>]>,
) -> Result<Figure> {
    let style = Style::default();
    let n = names.len();
    if values.len() != n || values.iter().any(|row| row.len() != n) {
        return Err(Error::Config(format!(
            "sharing heatmap: {n} names but a {}-row matrix (rows of lengths {:?})",
            values.len(),
            values.iter().map(Vec::len).collect::<Vec<_>>()
        )));
    }
    let labels = axis_labels(names);
    let widest = labels
        .iter()
        .map(|l| text_width(l, style.label_size))
        .max()
        .unwrap_or(0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (style.width, style.width * 3 / 4))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (main, bar) = root.split_horizontally(style.width - 90);
        let extent = n.max(1) as f64;
        let chart = ChartBuilder::on(&main)
            .caption(&title, ("sans-serif", style.title_size))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size((widest + 16).clamp(40, 200) as u32)
            .build_cartesian_2d(0f64..extent, 0f64..extent)
            .map_err(plot_err)?;
        // Cell (i, j) spans x ∈ [j, j+1] and y ∈ [n-1-i, n-i]: row 0 at the top, like seaborn.
        let centre =
            |i: usize, j: usize| chart.backend_coord(&(j as f64 + 0.5, (n - i) as f64 - 0.5));
        let cells = (0..n).flat_map(|i| (0..n).map(move |j| (i, j)));
        for (i, j) in cells.clone() {
            let corner = chart.backend_coord(&(j as f64, (n - i) as f64));
            let opposite = chart.backend_coord(&(j as f64 + 1.0, (n - 1 - i) as f64));
            root.draw(&Rectangle::new(
                [corner, opposite],
                colour(values[i][j]).filled(),
            ))
            .map_err(plot_err)?;
        }
        for (i, j) in cells {
            let v = values[i][j];
            let ink = if v > 60.0 { BLACK } else { WHITE };
            let note = notes.map(|n| n[i][j].as_str()).filter(|n| !n.is_empty());
            let (x, y) = centre(i, j);
            let lift = if note.is_some() {
                style.label_size as i32 / 2 + 1
            } else {
                0
            };
            root.draw(&Text::new(
                format!("{v:.1}"),
                (x, y - lift),
                ("sans-serif", style.label_size)
                    .into_font()
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(plot_err)?;
            if let Some(note) = note {
                root.draw(&Text::new(
                    note.to_string(),
                    (x, y + lift + 1),
                    ("sans-serif", style.label_size * 3 / 4)
                        .into_font()
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(plot_err)?;
            }
        }
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let font = TextStyle::from(("sans-serif", style.label_size).into_font());
        for (k, label) in labels.iter().enumerate() {
            // Column k under the grid, row k left of it, each at its cells' centre.
            let (cx, _) = centre(0, k);
            root.draw(&Text::new(
                label.clone(),
                (cx, ys.end + 8),
                font.clone().pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(plot_err)?;
            let (_, cy) = centre(k, 0);
            root.draw(&Text::new(
                label.clone(),
                (xs.start - 8, cy),
                font.clone().pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(plot_err)?;
        }
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

    #[test]
    fn heatmap_svg_has_title_labels_annotations_and_colour_bar() {
        let m = SharingMatrix {
            names: vec!["L/circles".into(), "L/squares".into()],
            matrix: vec![vec![100.0, 42.25], vec![42.25, 100.0]],
            metric: Overlap::IoMin,
            preprocessed: true,
            shared_by_all: 7,
            shared_within_seed: Vec::new(),
        };
        let fig = sharing_heatmap(&m, Some(0.875)).unwrap();
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
