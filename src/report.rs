//! The HTML report of a pipeline run (`report/index.html`): figures as inline SVG, tables, the
//! settings and the measured timings — one self-contained file.

use std::path::Path;

use crate::analysis::development::Development;
use crate::analysis::graph::WeightGraph;
use crate::analysis::graph::{graph_modularity, ModularityConfig};
use crate::analysis::masks::Overlap;
use crate::checkpoint::Checkpoint;
use crate::display::{escape_html, Table};
use crate::plot::sharing_heatmap;
use crate::Result;
use polars::prelude::*;

/// One row of the graph-modularity table: checkpoint, its accuracy (%), Q, z and p.
type ModularityRow = (String, Option<f64>, f64, Option<f64>, Option<f64>);

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
    body += "<h2>Modules by checkpoint</h2>";
    if let Some(w) = dev.mixed_settings_warning() {
        body += &format!("<p class=\"warn\">⚠ {}</p>", escape_html(&w));
    }
    body += &dev.table()?.to_html()?;
    body += &dev.sparsity_plot()?.to_html();
    body += &dev.dispersity_plot()?.to_html();
    body += "<h2>Weight sharing between shape modules (IoMin, weights shared by all removed)</h2>";
    for (ckpt, _) in dev.checkpoints() {
        body += &format!("<h3>{}</h3>", escape_html(&ckpt));
        if dev
            .records
            .iter()
            .filter(|r| r.checkpoint() == ckpt)
            .count()
            < 2
        {
            body += "<p>only one mask: no sharing matrix.</p>";
            continue;
        }
        let (m, acc) = dev.sharing(&ckpt, Overlap::IoMin, true)?;
        body += &sharing_heatmap(&m, acc)?.to_html();
    }
    body += "<h2>Graph modularity of the vision stack (spectral clustering, layer-shuffle null model)</h2>";
    let mut rows: Vec<ModularityRow> = Vec::new();
    let mut unreadable = Vec::new();
    for (ckpt, acc) in dev.checkpoints() {
        let Some(rec) = dev.records.iter().find(|r| r.checkpoint() == ckpt) else {
            continue;
        };
        // A mask whose base checkpoint cannot be read is named in the report, never dropped.
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
    let df = DataFrame::new_infer_height(vec![
        Column::new(
            "checkpoint".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "val_acc_%".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new("Q".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        Column::new("z".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
        Column::new("p".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()),
    ])?;
    body += &Table::new(df)
        .with_caption(format!("Newman Q (k = 4) with {shuffles} layer shuffles"))
        .to_html()?;
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
