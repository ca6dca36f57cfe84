//! `avr eval`: accuracy of a checkpoint, optionally under a mask, on a dataset folder.

use std::path::PathBuf;

use clap::ValueEnum;

use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::data::{AvrDataset, Split};
use avr_modularity::masking::Mask;
use avr_modularity::session;
use avr_modularity::train::eval::{evaluate, evaluate_with, EvalOptions};
use avr_modularity::Result;

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint: ours (`.safetensors` + `.json`) or the study's pickled `.ckpt` (detected by
    /// content; its panels are transposed automatically).
    #[arg(long)]
    ckpt: PathBuf,
    /// Dataset folder in either layout.
    #[arg(long)]
    data: PathBuf,
    /// Splits to evaluate on, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    split: Vec<SplitArg>,
    /// No-op, kept for old command lines: the checkpoint knows its panel orientation.
    #[arg(long, hide = true)]
    transpose_panels: bool,
    /// Evaluate under this mask (ours or the study's mask pickles).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Use the inverted mask (1 − mask).
    #[arg(long)]
    invert_mask: bool,
    /// Store the accuracy (n, 95 % interval) in the checkpoint's sidecar, e.g. the held-out
    /// test reading the development plots use (`--split test --record`). Not with a mask.
    #[arg(long, conflicts_with = "mask")]
    record: bool,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long)]
    json: bool,
}

/// `--split`: one dataset split, or all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Val,
    Test,
    All,
}

impl SplitArg {
    /// The library splits this value stands for.
    fn splits(self) -> Vec<Split> {
        match self {
            SplitArg::Train => vec![Split::Train],
            SplitArg::Val => vec![Split::Val],
            SplitArg::Test => vec![Split::Test],
            SplitArg::All => Split::ALL.to_vec(),
        }
    }
}

/// The splits a `--split` list names, each once, in order.
fn splits(args: &[SplitArg]) -> Vec<Split> {
    let mut out = Vec::new();
    for s in args.iter().flat_map(|a| a.splits()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

pub fn run(args: Args) -> Result<()> {
    let mut ckpt = Checkpoint::load(&args.ckpt)?;
    let chosen = splits(&args.split);
    let dataset = AvrDataset::open(&args.data)?.select(&chosen, None);
    let opts = EvalOptions {
        batch_size: args.batch,
        device: session::default_device(),
    };
    let report = match args.mask.map(Mask::load).transpose()? {
        Some(mask) => {
            let params = mask.apply(&ckpt.model.params, args.invert_mask)?;
            evaluate_with(&ckpt.model, &params, &dataset, &opts)?
        }
        None => evaluate(&ckpt.model, &dataset, &opts)?,
    };
    if args.record {
        let names = chosen.iter().map(|s| s.name().to_string()).collect();
        ckpt.record(report.recorded(&args.data.display().to_string(), names))?;
    }
    if args.json {
        return print_json(&report);
    }
    for (config, (c, n)) in &report.per_configuration {
        println!(
            "{config:<40} {c:>5}/{n:<5} {:6.2} %",
            100.0 * *c as f64 / *n as f64
        );
    }
    println!(
        "{:<40} {:>11} {}",
        "all",
        format!("{}/{}", report.correct, report.n),
        report.summary()
    );
    Ok(())
}
