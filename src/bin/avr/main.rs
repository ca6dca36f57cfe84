//! `avr` — the command-line face of avr-modularity: every pipeline step for headless and
//! cluster runs. Logic lives in the library; this binary only parses arguments and prints.
//! Each subcommand's arguments and its `run` live in `commands/<name>.rs`.

mod commands;

use clap::{Parser, Subcommand};

use avr_modularity::Result;
use commands::{
    bench, eval, generate, info, inspect, mask, modularity, report, results, sweep, toumei, toy,
    train,
};

#[derive(Parser)]
#[command(
    name = "avr",
    version,
    about = "Functional modularity of SCL on I-RAVEN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the library version, libtorch device and thread settings.
    Info(info::Args),
    /// Generate an I-RAVEN (default) or RAVEN dataset: `OUT/<config>/RAVEN_<k>_<split>.npz`,
    /// split by k mod 10 (0–5 train, 6–7 val, 8–9 test). Existing files are kept (resume).
    Generate(generate::Args),
    /// Keys, dtypes, shapes, target, predict and configuration of problem files.
    Inspect(inspect::Args),
    /// Accuracy of a checkpoint (optionally under a mask) on a dataset folder.
    Eval(eval::Args),
    /// Mask training, statistics and sharing.
    Mask(mask::Args),
    /// Train SCL on a dataset folder with milestone checkpoints.
    Train(train::Args),
    /// The masking method's validation tasks: add/mul (P_specialize) and double addition (P_reuse).
    Toy(toy::Args),
    /// The toumei graph-modularity experiments (patched F/G, direct, modularly varying goals).
    Toumei(toumei::Args),
    /// Sweeps as job tables: plan, run one job, status, gather, run locally, or on Slurm.
    Sweep(sweep::Args),
    /// Write the HTML report of a run: module tables and plots by measured checkpoint accuracy,
    /// sharing matrices, graph modularity, plus any extra HTML sections.
    Report(report::Args),
    /// Write RESULTS.md: the study's questions (module size, sharing, development, ablation)
    /// answered from a run's masks, with SVG figures, chance levels, intervals and tests.
    Results(results::Args),
    /// Benchmarks (figures go to BENCHMARKS.md).
    Bench(bench::Args),
    /// Graph modularity (spectral clustering, Newman Q, n-cut, shuffle null model).
    Modularity(modularity::Args),
}

fn main() {
    // Progress lines go to stderr so that `--json` output on stdout stays clean.
    avr_modularity::session::progress_to_stderr(true);
    let json = std::env::args_os().any(|a| a == "--json");
    // Exit codes a script can rely on: 0 ok, 2 usage (clap), 1 failure — a panic (a bug) too.
    // The hook only remembers the message: a panic the library catches (a loader worker's)
    // becomes an error there; one that reaches `main` is reported below.
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(info.to_string());
        }
    }));
    let cli = Cli::parse();
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail(json, error_kind(&e), &e.to_string()),
        Err(_) => {
            let message = LAST_PANIC
                .lock()
                .ok()
                .and_then(|m| m.clone())
                .unwrap_or_default();
            fail(
                json,
                "internal",
                &format!("internal error (please report): {message}"),
            )
        }
    }
}

/// The message of the last panic, for the report in `main`.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Prints the error on stderr — as `{"error": …, "kind": …}` under `--json` — and exits 1.
fn fail(json: bool, kind: &str, message: &str) -> ! {
    if json {
        eprintln!("{}", serde_json::json!({ "error": message, "kind": kind }));
    } else {
        eprintln!("avr: error: {message}");
    }
    std::process::exit(1);
}

/// The error's cause, for scripts that branch on it.
fn error_kind(e: &avr_modularity::Error) -> &'static str {
    use avr_modularity::Error as E;
    match e {
        E::Io { .. } => "io",
        E::BadFile { .. } => "bad_file",
        E::Torch(_) => "torch",
        E::Polars(_) => "table",
        E::Plot(_) => "plot",
        E::MaskMismatch { .. } => "mask_mismatch",
        E::Incomparable(_) => "incomparable",
        E::Diverged { .. } => "diverged",
        E::Architecture(_) => "architecture",
        E::InputShape(_) => "input_shape",
        E::MissingTensor(_) => "missing_tensor",
        E::DataExhausted(_) => "data_exhausted",
        E::Generation(_) => "generation",
        E::Json(_) => "json",
        E::NotEnough(_) => "not_enough",
        E::UnknownName(_) => "unknown_name",
        E::FixturesMissing => "fixtures_missing",
        E::Config(_) => "invalid_setting",
        _ => "other",
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info(args) => info::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Mask(args) => mask::run(args),
        Command::Train(args) => train::run(args),
        Command::Toy(args) => toy::run(args),
        Command::Toumei(args) => toumei::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Report(args) => report::run(args),
        Command::Results(args) => results::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Modularity(args) => modularity::run(args),
    }
}
