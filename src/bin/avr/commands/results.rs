//! `avr results`: RESULTS.md, the study's questions answered from a run's masks.

use std::path::PathBuf;

use avr_modularity::report::results::{write_results, ResultsConfig};
use avr_modularity::{session, Result};

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Folder of trained masks (`<checkpoint>/<task>-s<seed>.safetensors` + `.json`).
    #[arg(long)]
    masks: PathBuf,
    /// The markdown file written.
    #[arg(long, default_value = "RESULTS.md")]
    out: PathBuf,
    /// Folder of its SVG figures (linked relative to `--out`).
    #[arg(long, default_value = "results")]
    figures: PathBuf,
    /// Draws of the count-matched null behind every chance level.
    #[arg(long, default_value_t = ResultsConfig::default().null_draws)]
    null_draws: usize,
    /// Layer shuffles of the graph-modularity null model per checkpoint.
    #[arg(long, default_value_t = ResultsConfig::default().shuffles)]
    shuffles: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    session::setup(0);
    let cfg = ResultsConfig {
        null_draws: args.null_draws,
        shuffles: args.shuffles,
    };
    let summary = write_results(&args.out, &args.figures, &args.masks, &cfg)?;
    if args.json {
        return print_json(&serde_json::json!({
            "results": args.out,
            "masks": summary.masks,
            "checkpoints": summary.checkpoints,
            "figures": summary.figures,
        }));
    }
    println!(
        "{} ({} masks, {} checkpoints, {} figures)",
        args.out.display(),
        summary.masks,
        summary.checkpoints,
        summary.figures.len()
    );
    Ok(())
}
