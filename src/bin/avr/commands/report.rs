//! `avr report`: the HTML report of a run.

use std::path::{Path, PathBuf};

use avr_modularity::display::escape_html;
use avr_modularity::plot::{readable_window, training_curves};
use avr_modularity::report::write_report;
use avr_modularity::train::trainer::read_metrics_csv;
use avr_modularity::{session, Error, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of trained masks (`*.safetensors` + `.json`).
    #[arg(long)]
    masks: PathBuf,
    #[arg(long, default_value = "report/index.html")]
    out: PathBuf,
    /// Extra sections: `TITLE=FILE` (FILE holds HTML, or text shown verbatim if it ends in
    /// .txt/.json/.csv).
    #[arg(long, value_name = "TITLE=FILE", value_parser = parse_section)]
    section: Vec<(String, PathBuf)>,
    /// A training log (`metrics.csv` of `avr train`), drawn as training curves.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Layer shuffles of the graph-modularity null model per checkpoint.
    #[arg(long, default_value_t = 100)]
    shuffles: usize,
}

/// `TITLE=FILE`.
fn parse_section(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (title, file) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected TITLE=FILE"))?;
    Ok((title.to_string(), PathBuf::from(file)))
}

/// The HTML of a section file: verbatim text in `<pre>` for .txt/.json/.csv, else as is.
fn section_html(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let name = file.to_string_lossy();
    let verbatim = [".txt", ".json", ".csv"].iter().any(|x| name.ends_with(x));
    Ok(match verbatim {
        true => format!("<pre>{}</pre>", escape_html(&text)),
        false => text,
    })
}

pub fn run(args: Args) -> Result<()> {
    session::setup(0);
    let mut sections = args
        .section
        .iter()
        .map(|(title, file)| Ok((title.clone(), section_html(file)?)))
        .collect::<Result<Vec<_>>>()?;
    if let Some(csv) = &args.metrics {
        let rows = read_metrics_csv(csv)?;
        sections.push((
            "Training".into(),
            training_curves(
                "Training curves",
                &rows,
                readable_window(rows.len()),
                "validation",
            )?
            .to_html(),
        ));
    }
    write_report(&args.out, &args.masks, args.shuffles, &sections)?;
    println!("{}", args.out.display());
    Ok(())
}
