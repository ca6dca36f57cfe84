//! `avr train`: SCL on a dataset folder, with milestone checkpoints and a resumable state.

use std::path::PathBuf;

use avr_modularity::data::{AvrDataset, Split};
use avr_modularity::model::SclModel;
use avr_modularity::train::trainer::write_metrics_csv;
use avr_modularity::train::{train, TrainConfig};
use avr_modularity::{session, Result};

use super::{print_json, print_json_pretty, trimmed, Variant};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    data: PathBuf,
    /// official (default) or seed.
    #[arg(long, value_enum, default_value = "official")]
    variant: Variant,
    /// Panel side (resized by area averaging): 80 for official, 160 for seed.
    #[arg(long, default_value_t = 80)]
    size: i64,
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 5e-3)]
    lr: f64,
    #[arg(long, default_value_t = 100)]
    val_every: usize,
    /// Milestone levels in percent, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = trimmed::<f64>, default_value = "50,60,70,80,90")]
    milestones: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for milestone checkpoints, metrics.csv and the resumable state (last.*).
    #[arg(long, default_value = "model_ckpts")]
    out: PathBuf,
    /// Write the resumable state every N steps.
    #[arg(long, default_value_t = 50)]
    state_every: usize,
    /// Continue a killed run from OUT/last.* (same loss curve).
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    session::setup(args.seed);
    let model = SclModel::init(
        args.variant.at_size(args.size),
        args.seed,
        session::default_device(),
    );
    let all = AvrDataset::open(&args.data)?;
    let (train_set, val_set) = (all.split(Split::Train), all.split(Split::Val));
    let cfg = TrainConfig::default()
        .with_steps(args.steps)
        .with_batch_size(args.batch)
        .with_lr(args.lr)
        .with_val_every(args.val_every)
        .with_milestones(args.milestones.iter().map(|m| m / 100.0).collect())
        .with_seed(args.seed)
        .with_state_every(args.state_every)
        .with_resume(args.resume);
    let run = train(model, &train_set, &val_set, &cfg, Some(&args.out))?;
    let csv = args.out.join("metrics.csv");
    write_metrics_csv(&csv, &run.metrics)?;
    let summary = serde_json::json!({
        "milestones": run.milestones,
        "metrics_csv": csv,
        "final_val_accuracy": run.metrics.iter().rev().find_map(|r| r.val_accuracy),
    });
    if args.json {
        print_json(&summary)
    } else {
        print_json_pretty(&summary)
    }
}
