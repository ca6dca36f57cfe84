//! Weight graphs drawn: nodes by layer coloured by spectral cluster, and Q over training
//! against the layer-shuffle null band (the toumei experiments).

use plotters::prelude::*;

use super::lines::{line_plot_with_bands, plot_err, Band, Line};
use super::{Figure, Style};
use crate::analysis::graph::{modularity, spectral_clustering, WeightGraph};
use crate::analysis::toumei::{Model, ToumeiReport, ToumeiRun};
use crate::rng::Rng;
use crate::{Error, Result};

/// The strongest edges drawn per pair of layers under the nodes of [`cluster_graph`].
const EDGES_PER_BLOCK: usize = 150;

/// The graph's nodes as columns, one per layer (input left), coloured by `labels` (one per node,
/// layer-major), over each pair of layers' `EDGES_PER_BLOCK` heaviest edges in grey (darker =
/// heavier within the pair).
pub fn cluster_graph(graph: &WeightGraph, labels: &[usize], title: &str) -> Result<Figure> {
    let n = graph.num_nodes();
    if labels.len() != n {
        return Err(Error::InputShape(format!(
            "cluster graph: {} labels for {n} nodes",
            labels.len()
        )));
    }
    let positions = node_positions(&graph.layer_sizes);
    let edges = heaviest_edges(graph, EDGES_PER_BLOCK)?;
    let style = Style::default();
    let layers = graph.layer_sizes.len();
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (style.width, style.height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", style.title_size))
            .margin(12)
            .x_label_area_size(36)
            .build_cartesian_2d(-0.3f64..(layers as f64 - 0.7), -0.03f64..1.03f64)
            .map_err(plot_err)?;
        let sizes = graph.layer_sizes.clone();
        chart
            .configure_mesh()
            .disable_y_axis()
            .disable_mesh()
            .x_labels(layers)
            .x_label_formatter(&|x| {
                let l = x.round() as usize;
                sizes
                    .get(l)
                    .map_or(String::new(), |s| format!("layer {l} ({s})"))
            })
            .label_style(("sans-serif", style.label_size))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(edges.iter().rev().map(|&(i, j, w)| {
                let shade = 0.08 + 0.5 * w;
                PathElement::new(
                    vec![positions[i], positions[j]],
                    BLACK.mix(shade).stroke_width(1),
                )
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(
                (0..n).map(|i| Circle::new(positions[i], 3, Style::color(labels[i]).filled())),
            )
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Figure::new(title, svg))
}

/// `(layer, position in [0, 1])` of every node, layer-major, each layer spread over the height.
fn node_positions(layer_sizes: &[usize]) -> Vec<(f64, f64)> {
    layer_sizes
        .iter()
        .enumerate()
        .flat_map(|(l, &size)| {
            (0..size).map(move |i| {
                let y = if size == 1 {
                    0.5
                } else {
                    1.0 - i as f64 / (size - 1) as f64
                };
                (l as f64, y)
            })
        })
        .collect()
}

/// The `count` heaviest edges `(i, j, weight / the pair's heaviest)` of every pair of
/// consecutive layers.
fn heaviest_edges(graph: &WeightGraph, count: usize) -> Result<Vec<(usize, usize, f64)>> {
    let n = graph.num_nodes();
    let a = Vec::<f64>::try_from(graph.adjacency.flatten(0, -1)).map_err(Error::from)?;
    let mut out = Vec::new();
    let mut start = 0;
    for pair in graph.layer_sizes.windows(2) {
        let (rows, cols) = (
            start..start + pair[0],
            start + pair[0]..start + pair[0] + pair[1],
        );
        let mut edges: Vec<(usize, usize, f64)> = rows
            .flat_map(|i| cols.clone().map(move |j| (i, j)))
            .map(|(i, j)| (i, j, a[i * n + j]))
            .filter(|e| e.2 > 0.0)
            .collect();
        edges.sort_by(|x, y| y.2.total_cmp(&x.2));
        edges.truncate(count);
        let heaviest = edges.first().map_or(1.0, |e| e.2);
        out.extend(edges.into_iter().map(|(i, j, w)| (i, j, w / heaviest)));
        start += pair[0];
    }
    Ok(out)
}

/// A run's trained weight graph drawn with its spectral clusters at `k` (25 restarts, seeded
/// by the run's seed), titled with the model, seed and Q.
pub fn run_graph(run: &ToumeiRun, k: usize) -> Result<Figure> {
    let graph = run.graph()?;
    let labels = spectral_clustering(
        &graph.adjacency,
        k,
        25,
        &mut Rng::new(run.seed).fork("plot"),
    )?;
    let q = modularity(&graph.adjacency, &labels, 1.0);
    let title = format!(
        "{}, seed {}: k = {k}, Q = {q:.3}",
        run.model.label(),
        run.seed
    );
    cluster_graph(&graph, &labels, &title)
}

/// Q over training for each of `models` trained for `epochs` (mean over the report's seeds at
/// every reading), each with the band of its layer-shuffled networks (mean ± 2 sd, averaged
/// over seeds) behind it.
pub fn q_over_training(
    report: &ToumeiReport,
    models: &[Model],
    epochs: usize,
    title: &str,
) -> Result<Figure> {
    let mut lines = Vec::new();
    let mut bands = Vec::new();
    for &model in models {
        let runs: Vec<_> = report
            .runs_of(model)
            .into_iter()
            .filter(|r| r.last().epoch == epochs)
            .collect();
        let Some(longest) = runs.iter().map(|r| r.readings.len()).min() else {
            continue;
        };
        let mean = |f: &dyn Fn(&ToumeiRun) -> f64| {
            runs.iter().map(|r| f(r)).sum::<f64>() / runs.len() as f64
        };
        let points: Vec<(f64, f64, f64, f64)> = (0..longest)
            .map(|i| {
                let epoch = runs[0].readings[i].epoch as f64;
                let q = mean(&|r| r.readings[i].q);
                let null = mean(&|r| r.readings[i].q_null.0);
                let sd = mean(&|r| r.readings[i].q_null.1);
                (epoch, q, null - 2.0 * sd, null + 2.0 * sd)
            })
            .collect();
        let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
        lines.push(Line::new(
            format!("{} (n = {})", model.label(), runs.len()),
            &xs,
            &ys,
        ));
        bands.push(Band {
            points: points.iter().map(|p| (p.0, p.2, p.3)).collect(),
        });
    }
    if lines.is_empty() {
        return Err(Error::NotEnough(format!(
            "{title}: no runs of {models:?} trained for {epochs} epochs in the report"
        )));
    }
    line_plot_with_bands(
        title,
        "epoch",
        "Q (band: shuffles, mean ± 2 sd)",
        &lines,
        &bands,
    )
}
