//! Figures a reader can trust: every figure type rendered to SVG text and checked geometrically.
//! Labels sit on their cells, percentages are percentages, legends never cover data, and every
//! SVG scales down to the cell showing it. The SVG is parsed with plain string handling.

use avr_modularity::analysis::masks::{Overlap, SharingMatrix};
use avr_modularity::display::Figure;
use avr_modularity::masking::Mask;
use avr_modularity::model::Params;
use avr_modularity::plot::{
    line_plot, log_bar_chart, mask_probability_histogram, sharing_heatmap, weight_usage, Line,
    PALETTE,
};
use tch::Tensor;

/// Pixels a label may be off its cell's centre.
const TOLERANCE: f64 = 2.0;

// --- a small SVG reader ------------------------------------------------------------------

/// One element of an SVG document: name, attributes, text content (for `<text>`), and
/// whether it lies inside the `<g class="avr-legend">` group.
#[derive(Debug, Clone)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    in_legend: bool,
}

impl El {
    fn get(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }
}

fn parse_attrs(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].rsplit(char::is_whitespace).next().unwrap_or("");
        let after = &rest[eq + 2..];
        let Some(end) = after.find('"') else { break };
        out.push((key.to_string(), after[..end].to_string()));
        rest = &after[end + 1..];
    }
    out
}

/// Every start tag of `svg` in document order.
fn elements(svg: &str) -> Vec<El> {
    let mut out = Vec::new();
    let mut legend_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(off) = svg[i..].find('<') {
        let start = i + off;
        if svg[start..].starts_with("<!--") {
            i = svg[start..]
                .find("-->")
                .map_or(svg.len(), |e| start + e + 3);
            continue;
        }
        let end = svg[start..].find('>').map_or(svg.len(), |e| start + e);
        let tag = &svg[start + 1..end];
        i = end + 1;
        if let Some(name) = tag.strip_prefix('/') {
            depth = depth.saturating_sub(1);
            if name.trim() == "g" && legend_depth == Some(depth) {
                legend_depth = None;
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        let attrs = parse_attrs(tag);
        let self_closing = tag.ends_with('/');
        let text = if name == "text" {
            svg[i..].split('<').next().unwrap_or("").trim().to_string()
        } else {
            String::new()
        };
        let starts_legend =
            name == "g" && attrs.iter().any(|(k, v)| k == "class" && v == "avr-legend");
        if starts_legend {
            legend_depth = Some(depth);
        }
        out.push(El {
            name,
            attrs,
            text: unescape(&text),
            in_legend: legend_depth.is_some(),
        });
        if !self_closing {
            depth += 1;
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// An axis-aligned box `(x0, y0, x1, y1)`.
type Bbox = (f64, f64, f64, f64);

fn rect_box(e: &El) -> Option<Bbox> {
    let (x, y, w, h) = (e.num("x")?, e.num("y")?, e.num("width")?, e.num("height")?);
    Some((x, y, x + w, y + h))
}

/// Whether two boxes share interior area.
fn overlaps(a: Bbox, b: Bbox) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

fn texts<'a>(els: &'a [El], content: &str) -> Vec<&'a El> {
    els.iter()
        .filter(|e| e.name == "text" && e.text == content)
        .collect()
}

fn palette_hex() -> Vec<String> {
    PALETTE
        .iter()
        .map(|c| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2))
        .collect()
}

/// The legend's frame: the first rect of the `avr-legend` group.
fn legend_frame(els: &[El]) -> Bbox {
    els.iter()
        .find(|e| e.in_legend && e.name == "rect")
        .and_then(rect_box)
        .expect("figure has a legend group with a frame")
}

/// The root element has a `viewBox` matching its size and may shrink to its container.
fn assert_scalable(fig: &Figure) {
    let root = elements(&fig.svg).into_iter().next().expect("an element");
    assert_eq!(root.name, "svg", "{}", &fig.svg[..fig.svg.len().min(200)]);
    let (w, h) = (root.num("width").unwrap(), root.num("height").unwrap());
    assert_eq!(
        root.get("viewBox"),
        Some(format!("0 0 {w} {h}").as_str()),
        "{}: viewBox",
        fig.title
    );
    let style = root.get("style").unwrap_or("");
    assert!(
        style.contains("max-width:100%") && style.contains("height:auto"),
        "{}: root style {style:?}",
        fig.title
    );
}

// --- figures -----------------------------------------------------------------------------

const SHAPES: [&str; 4] = ["circles", "squares", "triangles", "hexagon"];

/// A deliberately asymmetric matrix, so that a transposed drawing is caught.
fn matrix() -> SharingMatrix {
    SharingMatrix {
        names: SHAPES.iter().map(|s| format!("SCL_90/{s}")).collect(),
        matrix: vec![
            vec![100.0, 12.5, 33.5, 41.5],
            vec![21.5, 100.0, 47.5, 8.5],
            vec![66.5, 88.5, 100.0, 55.5],
            vec![72.5, 5.5, 19.5, 100.0],
        ],
        metric: Overlap::IoMin,
        preprocessed: true,
        shared_by_all: 3,
        shared_within_seed: Vec::new(),
    }
}

/// The heatmap's cells as `(row, column) → box`, from the large rects on a regular grid.
fn heatmap_cells(els: &[El], n: usize) -> Vec<Vec<Bbox>> {
    let cells: Vec<Bbox> = els
        .iter()
        .filter(|e| e.name == "rect")
        .filter_map(rect_box)
        // Not the background (at the origin), not the colour bar's thin steps.
        .filter(|b| (b.0 > 0.0 || b.1 > 0.0) && b.2 - b.0 > 20.0 && b.3 - b.1 > 20.0)
        .collect();
    assert_eq!(cells.len(), n * n, "one rect per cell: {cells:?}");
    let mut xs: Vec<f64> = cells.iter().map(|b| b.0).collect();
    let mut ys: Vec<f64> = cells.iter().map(|b| b.1).collect();
    for v in [&mut xs, &mut ys] {
        v.sort_by(f64::total_cmp);
        v.dedup();
    }
    assert_eq!((xs.len(), ys.len()), (n, n), "an {n}×{n} grid");
    let mut grid = vec![vec![(0.0, 0.0, 0.0, 0.0); n]; n];
    for b in cells {
        let j = xs.iter().position(|x| *x == b.0).unwrap();
        let i = ys.iter().position(|y| *y == b.1).unwrap();
        grid[i][j] = b;
    }
    grid
}

fn centre(b: Bbox) -> (f64, f64) {
    ((b.0 + b.2) / 2.0, (b.1 + b.3) / 2.0)
}

#[test]
fn heatmap_labels_are_centred_on_their_cells_once_each() {
    let m = matrix();
    let n = m.names.len();
    let fig = sharing_heatmap(&m, Some(0.448)).unwrap();
    assert_scalable(&fig);
    let els = elements(&fig.svg);
    let grid = heatmap_cells(&els, n);
    let (left, bottom) = (grid[0][0].0, grid[n - 1][0].3);
    for (k, shape) in SHAPES.iter().enumerate() {
        let found = texts(&els, shape);
        assert_eq!(
            found.len(),
            2,
            "{shape}: one row and one column label, got {found:?}"
        );
        let column: Vec<_> = found
            .iter()
            .filter(|e| e.num("y").unwrap() > bottom)
            .collect();
        let row: Vec<_> = found
            .iter()
            .filter(|e| e.num("x").unwrap() < left)
            .collect();
        assert_eq!((column.len(), row.len()), (1, 1), "{shape}: {found:?}");
        let (cx, _) = centre(grid[0][k]);
        let (_, cy) = centre(grid[k][0]);
        let (x, y) = (column[0].num("x").unwrap(), row[0].num("y").unwrap());
        assert!(
            (x - cx).abs() <= TOLERANCE,
            "column label {shape} at x={x}, its cells' centre is {cx}"
        );
        assert!(
            (y - cy).abs() <= TOLERANCE,
            "row label {shape} at y={y}, its cells' centre is {cy}"
        );
        assert_eq!(column[0].get("text-anchor"), Some("middle"));
        assert_eq!(row[0].get("text-anchor"), Some("end"));
    }
    // Values: matrix[i][j] is written at the centre of row i, column j (not transposed).
    for (i, row) in m.matrix.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            if i == j {
                continue;
            }
            let t = texts(&els, &format!("{v:.1}"));
            assert_eq!(t.len(), 1, "value {v:.1} written once");
            let (cx, cy) = centre(grid[i][j]);
            let (x, y) = (t[0].num("x").unwrap(), t[0].num("y").unwrap());
            assert!(
                (x - cx).abs() <= TOLERANCE && (y - cy).abs() <= TOLERANCE,
                "value {v:.1} of ({i},{j}) at ({x},{y}), cell centre ({cx},{cy})"
            );
        }
    }
}

#[test]
fn heatmap_title_prints_the_fraction_as_a_percentage() {
    let m = matrix();
    let fig = sharing_heatmap(&m, Some(0.448)).unwrap();
    let els = elements(&fig.svg);
    let title = "Model accuracy: 44.8 % — IoMin (preprocessed)";
    assert_eq!(fig.title, title);
    assert_eq!(texts(&els, title).len(), 1, "title drawn once");
    assert!(!fig.svg.contains("0.4 %"));
    // A percentage passed by mistake is refused rather than printed as 4480 %.
    let err = sharing_heatmap(&m, Some(44.8)).unwrap_err().to_string();
    assert!(err.contains("fraction"), "{err}");
    assert!(sharing_heatmap(&m, Some(f64::NAN)).is_err());
    let edge = sharing_heatmap(&m, Some(1.0)).unwrap();
    assert!(
        edge.title.starts_with("Model accuracy: 100.0 %"),
        "{}",
        edge.title
    );
    let none = sharing_heatmap(&m, None).unwrap();
    assert_eq!(none.title, "Sharing (IoMin, preprocessed)");
}

#[test]
fn heatmap_keeps_labels_distinct_and_rejects_a_ragged_matrix() {
    // Same shape at two checkpoints: the short names would collide, so full names are used.
    let mut m = matrix();
    m.names = vec![
        "SCL_50/circles".into(),
        "SCL_90/circles".into(),
        "SCL_90/squares".into(),
        "SCL_90/hexagon".into(),
    ];
    let fig = sharing_heatmap(&m, None).unwrap();
    let els = elements(&fig.svg);
    for name in &m.names {
        assert_eq!(texts(&els, name).len(), 2, "{name}");
    }
    assert!(texts(&els, "circles").is_empty());
    // One cell, too.
    let one = SharingMatrix {
        names: vec!["L/circles".into()],
        matrix: vec![vec![100.0]],
        ..matrix()
    };
    let els = elements(&sharing_heatmap(&one, None).unwrap().svg);
    let grid = heatmap_cells(&els, 1);
    let label = texts(&els, "circles");
    assert_eq!(label.len(), 2);
    let (cx, cy) = centre(grid[0][0]);
    assert!(label
        .iter()
        .any(|e| (e.num("x").unwrap() - cx).abs() <= TOLERANCE));
    assert!(label
        .iter()
        .any(|e| (e.num("y").unwrap() - cy).abs() <= TOLERANCE));
    let mut ragged = matrix();
    ragged.matrix[2].pop();
    assert!(sharing_heatmap(&ragged, None).is_err());
}

/// Asserts the legend frame covers no bar, nor any of the plot above the bars' baseline
/// (the columns the bars stand in, up to the top of the figure), and returns (bars, frame).
fn bars_clear_of_legend(fig: &Figure) -> (Vec<Bbox>, Bbox) {
    let els = elements(&fig.svg);
    let palette = palette_hex();
    let bars: Vec<Bbox> = els
        .iter()
        .filter(|e| !e.in_legend && e.name == "rect")
        .filter(|e| {
            e.get("fill")
                .is_some_and(|f| palette.iter().any(|p| p == f))
        })
        .filter_map(rect_box)
        .collect();
    assert!(!bars.is_empty(), "{}: no bars found", fig.title);
    let frame = legend_frame(&els);
    for b in &bars {
        assert!(
            !overlaps(*b, frame),
            "{}: legend {frame:?} covers bar {b:?}",
            fig.title
        );
    }
    let plot = bars.iter().fold(
        (f64::INFINITY, 0.0, f64::NEG_INFINITY, f64::NEG_INFINITY),
        |p, b| (p.0.min(b.0), 0.0, p.2.max(b.2), p.3.max(b.3)),
    );
    assert!(
        !overlaps(plot, frame),
        "{}: legend {frame:?} lies over the plot {plot:?}",
        fig.title
    );
    let root = &els[0];
    let (w, h) = (root.num("width").unwrap(), root.num("height").unwrap());
    assert!(
        frame.0 >= 0.0 && frame.1 >= 0.0 && frame.2 <= w && frame.3 <= h,
        "{}: legend {frame:?} outside the {w}×{h} figure",
        fig.title
    );
    (bars, frame)
}

#[test]
fn per_tensor_bar_legend_covers_no_bar_and_labels_sit_under_bars() {
    // The study's layout: many vision tensors, then the other sub-networks, with the tallest
    // bars at the right end (where a legend in the upper right used to cover them).
    let mut labels = Vec::new();
    let mut groups = Vec::new();
    for (group, prefix, count) in [
        ("vision", "V", 26),
        ("attr_net", "A", 4),
        ("ff_residual", "FFR", 6),
        ("rel_net", "R", 6),
        ("to_logit", "L", 2),
    ] {
        for k in 1..=count {
            labels.push(format!("{prefix}{k}"));
            groups.push(group.to_string());
        }
    }
    let values: Vec<f64> = (0..labels.len())
        .map(|i| {
            if i == 40 {
                0.0
            } else {
                0.2 / (1.0 + (labels.len() - i) as f64)
            }
        })
        .collect();
    let fig = log_bar_chart("per tensor", "n_i / n_total", &labels, &values, &groups).unwrap();
    assert_scalable(&fig);
    let (bars, _) = bars_clear_of_legend(&fig);
    assert_eq!(bars.len(), labels.len() - 1, "a bar per non-zero value");
    let els = elements(&fig.svg);
    for g in ["vision", "attr_net", "ff_residual", "rel_net", "to_logit"] {
        let t = texts(&els, g);
        assert!(t.len() == 1 && t[0].in_legend, "legend entry {g}: {t:?}");
    }
    // Each tensor label once, at the centre of its bar.
    let mut sorted = bars.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let nonzero: Vec<&String> = labels
        .iter()
        .zip(&values)
        .filter(|(_, v)| **v > 0.0)
        .map(|(l, _)| l)
        .collect();
    for (label, bar) in nonzero.iter().zip(&sorted) {
        let t = texts(&els, label);
        assert_eq!(t.len(), 1, "{label}");
        let x = t[0].num("x").unwrap();
        assert!(
            (x - centre(*bar).0).abs() <= TOLERANCE,
            "{label} at x={x}, bar centre {}",
            centre(*bar).0
        );
    }
    // No empty slot after the last bar: the last bar ends near the right of the plot.
    let last = sorted.last().unwrap();
    let slot = sorted[1].0 - sorted[0].0;
    let axis_end = els[0].num("width").unwrap() - 12.0;
    assert!(
        axis_end - last.2 < slot,
        "empty slot after the last bar: bar ends at {}, axis at {axis_end}",
        last.2
    );
}

fn mask(name: &str, values: &[f32]) -> Mask {
    let mut p = Params::new();
    p.insert(
        "w",
        Tensor::from_slice(values).reshape([2, values.len() as i64 / 2]),
    );
    Mask::new(name, p, None)
}

#[test]
fn histogram_legend_covers_no_bar() {
    let logits: Vec<f32> = (0..400).map(|i| (i as f32 - 150.0) / 20.0).collect();
    let fig = mask_probability_histogram(&mask("L/circles", &logits), 20).unwrap();
    assert_scalable(&fig);
    let (bars, _) = bars_clear_of_legend(&fig);
    assert_eq!(bars.len(), 20);
    let els = elements(&fig.svg);
    for g in ["kept (σ(l) > 0.5)", "removed"] {
        assert_eq!(texts(&els, g).len(), 1, "{g}");
    }
}

#[test]
fn line_plot_legend_covers_no_data() {
    let xs: Vec<f64> = (0..20).map(f64::from).collect();
    let series = vec![
        Line::new(
            "task",
            &xs,
            &xs.iter().map(|x| 50.0 + 2.0 * x).collect::<Vec<_>>(),
        ),
        Line::new(
            "control (originals)",
            &xs,
            &xs.iter().map(|x| 90.0 - x).collect::<Vec<_>>(),
        ),
        Line::new(
            "inverted, task",
            &xs,
            &xs.iter().map(|_| 95.0).collect::<Vec<_>>(),
        ),
    ];
    let fig = line_plot("mask training", "step", "%", &series).unwrap();
    assert_scalable(&fig);
    let els = elements(&fig.svg);
    let frame = legend_frame(&els);
    let points: Vec<(f64, f64)> = els
        .iter()
        .filter(|e| !e.in_legend && e.name == "circle")
        .map(|e| (e.num("cx").unwrap(), e.num("cy").unwrap()))
        .collect();
    assert_eq!(points.len(), 60);
    let data = points.iter().fold(
        (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ),
        |b, p| (b.0.min(p.0), b.1.min(p.1), b.2.max(p.0), b.3.max(p.1)),
    );
    assert!(
        !overlaps(
            (data.0 - 3.0, data.1 - 3.0, data.2 + 3.0, data.3 + 3.0),
            frame
        ),
        "legend {frame:?} overlaps the data {data:?}"
    );
    for s in &series {
        let t = texts(&els, &s.name);
        assert!(t.len() == 1 && t[0].in_legend, "{}: {t:?}", s.name);
    }
    // Unnamed series: no legend at all.
    let bare = line_plot("t", "x", "y", &[Line::new("", &xs, &xs)]).unwrap();
    assert!(!bare.svg.contains("avr-legend"));
}

#[test]
fn usage_image_scales_and_its_legend_entries_do_not_collide() {
    let a = mask("SCL_90/triangles", &[1.0, -1.0, 1.0, -1.0, 1.0, 1.0]);
    let b = mask("SCL_90/pentagon", &[1.0, 1.0, -1.0, -1.0, -1.0, 1.0]);
    let fig = weight_usage(&a, &b, None, "w").unwrap();
    assert_scalable(&fig);
    let els = elements(&fig.svg);
    let swatches: Vec<f64> = els
        .iter()
        .filter(|e| e.name == "rect" && e.num("width") == Some(12.0))
        .map(|e| e.num("x").unwrap())
        .collect();
    assert_eq!(swatches.len(), 5);
    // Each label ends (at 0.62 em a character, generous) before the next swatch.
    let labels = [
        "only SCL_90/triangles",
        "only SCL_90/pentagon",
        "both",
        "control only",
    ];
    for (k, label) in labels.iter().enumerate() {
        let t = texts(&els, label);
        assert_eq!(t.len(), 1, "{label}");
        let end = t[0].num("x").unwrap() + label.chars().count() as f64 * 12.0 * 0.6;
        assert!(end < swatches[k + 1], "{label} runs into the next entry");
    }
    let w = els[0].num("width").unwrap();
    assert!(swatches.iter().all(|x| *x + 12.0 <= w));
}

#[test]
fn side_by_side_fits_the_cell_in_html_and_scales_as_svg() {
    let m = matrix();
    let heatmaps: Vec<Figure> = (0..3)
        .map(|_| sharing_heatmap(&m, Some(0.448)).unwrap())
        .collect();
    let both = Figure::side_by_side("sharing by checkpoint", &heatmaps);
    assert_scalable(&both);
    let root = &elements(&both.svg)[0];
    assert_eq!(root.num("width"), Some(3.0 * 640.0));
    // HTML: a wrapping flex row of three SVGs, each shrinkable with its own viewBox.
    let html = both.to_html();
    assert!(html.starts_with("<figure"), "{}", &html[..100]);
    assert!(html.contains("display:flex") && html.contains("flex-wrap:wrap"));
    let parts: Vec<El> = elements(&html)
        .into_iter()
        .filter(|e| e.name == "svg")
        .collect();
    assert_eq!(parts.len(), 3);
    for p in &parts {
        assert_eq!(p.get("viewBox"), Some("0 0 640 480"));
        assert!(p.get("style").unwrap().contains("max-width:100%"));
    }
    // The parts are the heatmaps, labels and all.
    let els = elements(&html);
    assert_eq!(texts(&els, "circles").len(), 6);
    // A single figure's HTML is one shrinkable SVG.
    let single = heatmaps[0].to_html();
    assert_eq!(single.matches("<svg").count(), 1);
    assert!(single.contains("max-width:100%"));
}

#[test]
fn wide_figures_stay_within_a_notebook_cell() {
    // Notebooks show single figures as images, which CSS cannot shrink: no figure is drawn
    // wider than 840 px (nbconvert's output area at a 1000 px window is about 880 px wide).
    let n = 150;
    let labels: Vec<String> = (0..n)
        .map(|i| format!("{:.3}", i as f64 / n as f64))
        .collect();
    let values: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let groups: Vec<String> = (0..n)
        .map(|i| if i < n / 2 { "removed" } else { "kept" }.to_string())
        .collect();
    let bars = log_bar_chart("many bins", "scalars", &labels, &values, &groups).unwrap();
    assert_scalable(&bars);
    let width = elements(&bars.svg)[0].num("width").unwrap();
    assert!(width <= 840.0, "bar chart {width} px wide");
    let (drawn, _) = bars_clear_of_legend(&bars);
    assert_eq!(drawn.len(), n);
    // Upright labels would collide at this density: every k-th is written, none twice, and
    // written labels are at least a line's height apart.
    let els = elements(&bars.svg);
    let xs: Vec<f64> = labels
        .iter()
        .flat_map(|l| texts(&els, l))
        .map(|t| t.num("x").unwrap())
        .collect();
    assert!(xs.len() > 10 && xs.len() < n, "{} labels written", xs.len());
    assert!(xs.windows(2).all(|w| w[1] - w[0] >= 11.0), "{xs:?}");
    let values: Vec<f32> = (0..64 * 1152).map(|i| (i % 7) as f32 - 3.0).collect();
    let a = mask("a", &values);
    let b = mask("b", &values.iter().map(|v| -v).collect::<Vec<_>>());
    let usage = weight_usage(&a, &b, None, "w").unwrap();
    assert_scalable(&usage);
    let width = elements(&usage.svg)[0].num("width").unwrap();
    assert!(width <= 840.0, "usage image {width} px wide");
}
