//! `avr toumei`: the toumei graph-modularity experiments on real handwritten digits.

use std::path::PathBuf;

use clap::ValueEnum;

use avr_modularity::analysis::toumei::{run_toumei, Experiment, ToumeiConfig};
use avr_modularity::data::digits::Digits;
use avr_modularity::{files, session, Error, Result};

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// patched (both freezing variants vs the direct model), direct, mvg (switching and random
    /// goals vs the fixed goal), masks (masks meet graphs), or all.
    #[arg(value_enum)]
    experiment: Which,
    /// Seeds 0..N (each: its own split, initialisation, batches and clustering).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// smoke (seconds) or full (toumei's schedules).
    #[arg(long, value_enum, default_value = "full")]
    size: Size,
    /// A JSON file of `ToumeiConfig` fields overriding the size's preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// scikit-learn's digits.csv(.gz) (default: the one `make setup` installs; AVR_DIGITS).
    #[arg(long, conflicts_with_all = ["mnist_images", "mnist_labels"])]
    digits: Option<PathBuf>,
    /// MNIST images in IDX format (gzipped or not), with --mnist-labels.
    #[arg(long, requires = "mnist_labels")]
    mnist_images: Option<PathBuf>,
    /// MNIST labels in IDX format, with --mnist-images.
    #[arg(long, requires = "mnist_images")]
    mnist_labels: Option<PathBuf>,
    /// Also write the whole report as JSON to this file (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Patched,
    Direct,
    Mvg,
    Masks,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Size {
    Smoke,
    Full,
}

impl From<Which> for Experiment {
    fn from(w: Which) -> Self {
        match w {
            Which::Patched => Experiment::Patched,
            Which::Direct => Experiment::Direct,
            Which::Mvg => Experiment::Mvg,
            Which::Masks => Experiment::Masks,
            Which::All => Experiment::All,
        }
    }
}

fn config(args: &Args) -> Result<ToumeiConfig> {
    let preset = match args.size {
        Size::Smoke => ToumeiConfig::smoke(),
        Size::Full => ToumeiConfig::full(),
    };
    let Some(path) = &args.config else {
        return Ok(preset);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let overrides: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not JSON: {e}")))?;
    let mut merged = serde_json::to_value(&preset)?;
    if let (Some(base), Some(over)) = (merged.as_object_mut(), overrides.as_object()) {
        over.iter().for_each(|(k, v)| {
            base.insert(k.clone(), v.clone());
        });
    }
    serde_json::from_value(merged)
        .map_err(|e| Error::bad_file(path, format!("not a toumei config: {e}")))
}

pub fn run(args: Args) -> Result<()> {
    session::setup(0);
    let cfg = config(&args)?;
    let digits = match (&args.digits, &args.mnist_images, &args.mnist_labels) {
        (Some(path), _, _) => Digits::load_sklearn(path)?,
        (None, Some(images), Some(labels)) => Digits::load_idx(images, labels)?,
        _ => Digits::sklearn()?,
    };
    let seeds: Vec<u64> = (0..args.seeds).collect();
    let report = run_toumei(&digits, &cfg, args.experiment.into(), &seeds)?;
    if let Some(out) = &args.out {
        files::write_atomic(out, serde_json::to_string(&report)?.as_bytes())?;
    }
    if args.json {
        return print_json(&report);
    }
    println!("{}", report.summary_table()?.df);
    if !report.recoveries.is_empty() {
        println!("{}", report.recovery_table()?.df);
    }
    for finding in report.findings() {
        println!("{finding}");
    }
    if !report.k_sweep.is_empty() {
        println!(
            "{}\n{}",
            report.k_sweep_table()?.df,
            report.k_sweep_sentence()
        );
    }
    println!(
        "({} digits from {}; {:.0} s)",
        report.digits.1, report.digits.0, report.seconds
    );
    Ok(())
}
