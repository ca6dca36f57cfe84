//! `avr train`: SCL on a dataset folder, with milestone checkpoints and a resumable state.

use std::path::PathBuf;

use avr_modularity::data::{AvrDataset, Split};
use avr_modularity::model::SclModel;
use avr_modularity::train::trainer::write_metrics_csv;
use avr_modularity::train::{train, TrainConfig};
use avr_modularity::{session, Result};

use super::{print_json, print_json_pretty, trimmed, PrecisionArg, Variant};

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
    /// Decoupled weight decay (0 gives plain Adam, as the study trained).
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Clip the global gradient norm to this value (the study's best evidence: 0.5).
    #[arg(long)]
    clip_grad_norm: Option<f64>,
    #[arg(long, default_value_t = 100)]
    val_every: usize,
    /// Milestone levels in percent, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = trimmed::<f64>, default_value = "50,60,70,80,90")]
    milestones: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after the first validation at or above this accuracy, in percent.
    #[arg(long, value_parser = trimmed::<f64>)]
    stop_at: Option<f64>,
    /// Re-estimate the BatchNorm statistics from this many fixed training batches before each
    /// validation (0 keeps the running averages, which trail moving weights).
    #[arg(long, default_value_t = 30)]
    bn_recalibration: usize,
    /// Validate on at most this many problems, evenly spread over the validation split
    /// (0 = all).
    #[arg(long, default_value_t = 0)]
    val_problems: usize,
    /// Folder for milestone checkpoints, metrics.csv and the resumable state (last.*).
    #[arg(long, default_value = "model_ckpts")]
    out: PathBuf,
    /// Write the resumable state every N steps.
    #[arg(long, default_value_t = 50)]
    state_every: usize,
    /// The number format of the steps' convolutions and matrix products (bf16: autocast-style,
    /// f32 master weights; validation stays f32).
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    /// Continue a killed run from OUT/last.* (same loss curve).
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    session::setup(args.seed);
    let precision = args.precision.checked()?;
    let model = SclModel::init(
        args.variant.at_size(args.size),
        args.seed,
        session::default_device(),
    );
    let all = AvrDataset::open(&args.data)?;
    let train_set = all.split(Split::Train);
    let val_set = all.split(Split::Val).spread(args.val_problems);
    let cfg = TrainConfig::default()
        .with_steps(args.steps)
        .with_batch_size(args.batch)
        .with_lr(args.lr)
        .with_weight_decay(args.weight_decay)
        .with_clip_grad_norm(args.clip_grad_norm)
        .with_val_every(args.val_every)
        .with_milestones(args.milestones.iter().map(|m| m / 100.0).collect())
        .with_seed(args.seed)
        .with_state_every(args.state_every)
        .with_resume(args.resume)
        .with_bn_recalibration_batches(args.bn_recalibration)
        .with_stop_at_accuracy(args.stop_at.map(|a| a / 100.0))
        .with_precision(precision);
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
