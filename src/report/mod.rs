//! The HTML report of a pipeline run (`report/index.html`): figures as inline SVG, tables, the
//! settings and the measured timings — one self-contained file.

use std::path::Path;

use crate::analysis::chance::ChanceConfig;
use crate::analysis::development::Development;
use crate::analysis::graph::WeightGraph;
use crate::analysis::graph::{graph_modularity, ModularityConfig};
use crate::analysis::masks::{mask_stats, Overlap};
use crate::checkpoint::Checkpoint;
use crate::display::{escape_html, Table};
use crate::plot::sharing_chance_heatmap;
use crate::Result;
use polars::prelude::*;

pub mod results;
pub use results::{write_results, ResultsConfig, ResultsSummary};

/// One row of the graph-modularity table: checkpoint, its accuracy (%), Q, z and p.
type ModularityRow = (String, Option<f64>, f64, Option<f64>, Option<f64>);

/// Draws of the count-matched null behind every chance level of the report.
const NULL_DRAWS: usize = 1000;

/// Module size and dispersity: every mask, the mean over seeds with intervals and chance, the
/// plots, and the changes over training as tested sentences.
fn modules_section(dev: &Development) -> Result<String> {
    let mut html = String::from("<h2>Modules by checkpoint</h2>");
    if let Some(w) = dev.mixed_settings_warning() {
        html += &format!("<p class=\"warn\">⚠ {}</p>", escape_html(&w));
    }
    if !dev.x_is_test() {
        html += "<p class=\"warn\">⚠ some checkpoints have no held-out test reading \
                 (<code>avr eval --split test --record</code>): the x-axis shows the validation \
                 readings that chose them, which favour them.</p>";
    }
    html += &dev.table()?.to_html_all()?;
    let chance = ChanceConfig::default().with_draws(200);
    html += &dev.module_table(&chance)?.to_html_all()?;
    html += &dev.sparsity_plot()?.to_html();
    html += &dev.dispersity_plot()?.to_html();
    let findings = [
        dev.change("module size (kept %)", &|r| {
            100.0 * mask_stats(&r.mask).kept_fraction
        }),
        dev.change("dispersity", &|r| mask_stats(&r.mask).dispersity),
    ];
    for f in findings.into_iter().flatten() {
        html += &format!("<p>{}</p>", escape_html(&f.sentence));
    }
    Ok(html)
}

/// Sharing at every checkpoint against its chance level, and the replicate tests where tasks
/// were trained with several seeds.
fn sharing_section(dev: &Development) -> Result<String> {
    let mut html = format!(
        "<h2>Weight sharing between shape modules (IoMin after the study's preprocessing, per \
         seed; beneath each value its count-matched chance level and z, {NULL_DRAWS} draws)</h2>"
    );
    let chance = ChanceConfig::default().with_draws(NULL_DRAWS);
    // Over the shapes: the pooled control is another task, not a sixth shape.
    let shapes = dev.without_task(results::CONTROL_TASK);
    for (ckpt, _) in shapes.checkpoints() {
        html += &format!("<h3>{}</h3>", escape_html(&ckpt));
        if shapes.masks_at(&ckpt) < 2 {
            html += "<p>One shape mask: no sharing matrix.</p>";
            continue;
        }
        let (m, acc) = shapes.study_sharing(&ckpt, &chance)?;
        if !m.preprocessed {
            html += "<p>Raw IoMin, not preprocessed: the study's preprocessing needs three masks \
                     of each seed.</p>";
        }
        html += &sharing_chance_heatmap(&m, acc)?.to_html();
        let (above, below) = m.above_below();
        html += &format!("<p>{above} pairs above chance (one-sided p ≤ 0.05), {below} not.</p>");
        if let Ok(pooled) = m.replicate_test() {
            html += &format!("<p>{}</p>", escape_html(&pooled.verdict(0.05, "IoMin")));
        }
        html += &replicate_findings(&shapes, &ckpt)?;
    }
    Ok(html)
}

/// For every pair of tasks with at least two seeds each at `ckpt`: between-task against
/// replicate overlap, decided by the permutation test.
fn replicate_findings(dev: &Development, ckpt: &str) -> Result<String> {
    let mut html = String::new();
    for t in dev.replicate_tests(ckpt, Overlap::IoMin, 0)? {
        html += &format!("<li>{}</li>", escape_html(&t.verdict(0.05)));
    }
    Ok(match html.is_empty() {
        true => "<p>One seed per task: no replicate test (train ≥ 2 seeds per shape).</p>".into(),
        false => format!("<p>Between shapes vs replicates (raw IoMin, one-sided permutation test at 0.05):</p><ul>{html}</ul>"),
    })
}

/// Graph modularity of each checkpoint's vision stack (spectral clustering, k = 4, Newman Q
/// against `shuffles` layer shuffles), and a line for each checkpoint that could not be read —
/// named, never dropped.
fn modularity_table(dev: &Development, shuffles: usize) -> Result<(Table, Vec<String>)> {
    let (rows, unreadable) = modularity_rows(dev, shuffles)?;
    Ok((modularity_rows_table(&rows, shuffles)?, unreadable))
}

/// The rows of [`modularity_table`] and the checkpoints that could not be read.
fn modularity_rows(
    dev: &Development,
    shuffles: usize,
) -> Result<(Vec<ModularityRow>, Vec<String>)> {
    let mut rows: Vec<ModularityRow> = Vec::new();
    let mut unreadable = Vec::new();
    for (ckpt, acc) in dev.checkpoints() {
        let Some(rec) = dev.records.iter().find(|r| r.checkpoint() == ckpt) else {
            continue;
        };
        let model = match rec.base_checkpoint_path() {
            Some(path) => match Checkpoint::load(&path) {
                Ok(c) => c.model,
                Err(e) => {
                    unreadable.push(format!("{ckpt}: {e}"));
                    continue;
                }
            },
            None => {
                unreadable.push(format!(
                    "{ckpt}: base checkpoint '{}' not found",
                    rec.sidecar.base_checkpoint
                ));
                continue;
            }
        };
        let report = graph_modularity(
            &WeightGraph::from_scl(&model)?,
            &ModularityConfig {
                k: 4,
                shuffles,
                ..Default::default()
            },
        )?;
        rows.push((ckpt, acc.map(|a| 100.0 * a), report.q, report.z, report.p));
    }
    Ok((rows, unreadable))
}

/// The graph-modularity rows as a table.
fn modularity_rows_table(rows: &[ModularityRow], shuffles: usize) -> Result<Table> {
    let df = DataFrame::new_infer_height(vec![
        Column::new(
            "checkpoint".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "accuracy_% (x-axis reading)".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new("Q".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        Column::new("z".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
        Column::new("p".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()),
    ])?;
    let caption = format!("Newman Q (k = 4) with {shuffles} layer shuffles");
    Ok(Table::new(df).with_caption(caption))
}

/// One sentence per checkpoint on its graph modularity against the layer-shuffle null, decided
/// by the shuffles' one-sided p of lying above them (the only direction they test).
fn modularity_findings(rows: &[ModularityRow], shuffles: usize) -> Vec<String> {
    rows.iter()
        .map(|(ckpt, _, q, z, p)| match (z, p) {
            (Some(z), Some(p)) if *p <= 0.05 => format!(
                "{ckpt}: Q = {q:.3} is significantly above its {shuffles} layer shuffles \
                 (z = {z:.2}, one-sided p = {p:.3})."
            ),
            (Some(z), Some(p)) => format!(
                "{ckpt}: Q = {q:.3}, not significantly above its {shuffles} layer shuffles \
                 (z = {z:.2}, one-sided p = {p:.3}; lying below them is not tested)."
            ),
            _ => format!("{ckpt}: Q = {q:.3}, no null model was drawn."),
        })
        .collect()
}

/// Builds the report from the masks under `masks_dir` (and the checkpoints their sidecars name),
/// plus free-form `sections` (title, HTML) such as training curves, settings and timings.
pub fn write_report(
    out: &Path,
    masks_dir: &Path,
    shuffles: usize,
    sections: &[(String, String)],
) -> Result<()> {
    let dev = Development::from_dir(masks_dir)?;
    let mut body = String::new();
    for (title, html) in sections {
        body += &format!("<h2>{}</h2>{html}", escape_html(title));
    }
    body += &modules_section(&dev)?;
    body += &sharing_section(&dev)?;
    body += "<h2>Graph modularity of the vision stack (spectral clustering, layer-shuffle null model)</h2>";
    let (table, unreadable) = modularity_table(&dev, shuffles)?;
    body += &table.to_html_all()?;
    for line in &unreadable {
        body += &format!(
            "<p class=\"warn\">⚠ no graph modularity for {}</p>",
            escape_html(line)
        );
    }
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>avr-modularity report</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}.warn{{color:#b00}}figure{{margin:1em 0}}</style></head><body><h1>avr-modularity — pipeline report</h1>{body}</body></html>"
    );
    crate::checkpoint::write_atomic(out, html.as_bytes())
}
