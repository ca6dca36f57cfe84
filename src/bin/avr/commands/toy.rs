//! `avr toy`: the masking method's validation tasks.

use clap::ValueEnum;

use avr_modularity::masking::toy::{run_toy, ToyConfig, ToyTask};
use avr_modularity::{session, Result};

use super::{print_json, trimmed};

#[derive(clap::Args)]
pub struct Args {
    /// addmul or double-add.
    #[arg(value_enum)]
    task: Task,
    #[arg(long, default_value_t = 2)]
    digits: usize,
    /// Hidden widths, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = trimmed::<i64>, default_value = "400,400,200")]
    hidden: Vec<i64>,
    #[arg(long, default_value_t = 20000)]
    train_steps: usize,
    #[arg(long, default_value_t = 5000)]
    mask_steps: usize,
    #[arg(long, default_value_t = 1e-4)]
    beta: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

/// The toy task: mirrors [`ToyTask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Task {
    // `(a op b) mod 10^digits`, op ∈ {+, ×} (P_specialize).
    #[value(name = "addmul")]
    AddMul,
    // Two independent sums (P_reuse).
    DoubleAdd,
}

impl From<Task> for ToyTask {
    fn from(task: Task) -> Self {
        match task {
            Task::AddMul => ToyTask::AddMul,
            Task::DoubleAdd => ToyTask::DoubleAdd,
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    session::setup(args.seed);
    let cfg = ToyConfig {
        task: args.task.into(),
        digits: args.digits,
        hidden: args.hidden,
        train_steps: args.train_steps,
        mask_steps: args.mask_steps,
        beta: args.beta,
        seed: args.seed,
        ..Default::default()
    };
    let report = run_toy(&cfg, session::default_device())?;
    if args.json {
        print_json(&report)
    } else {
        println!(
            "{}\n{}",
            report.accuracy_table()?.df,
            report.layer_table()?.df
        );
        Ok(())
    }
}
