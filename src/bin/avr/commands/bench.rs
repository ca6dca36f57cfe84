//! `avr bench generate|loader|train|switch|mask|modularity|gemm|stages|flops`: the timings of
//! BENCHMARKS.md.

use std::path::PathBuf;

use clap::Subcommand;

use avr_modularity::analysis::graph::{
    graph_modularity, planted_mlp, ModularityConfig, WeightGraph,
};
use avr_modularity::bench::{
    compare_switch, gemm_peak, memory_bandwidth, KernelSwitch, RatioSummary,
};
use avr_modularity::data::dataset::BatchOptions;
use avr_modularity::data::generate::{
    bench_generate, generate_dataset_with, Durability, GeneratorConfig,
};
use avr_modularity::data::loader::{bench_loader, LoaderConfig};
use avr_modularity::data::{AvrDataset, Packing};
use avr_modularity::masking::engine::{bench_mask_steps, SampleBatching};
use avr_modularity::model::flops::{official_stage_flops, official_stage_times};
use avr_modularity::model::{OfficialSclConfig, Precision, SclModel};
use avr_modularity::train::trainer::{bench_steps, TrainConfig};
use avr_modularity::{session, Result};

use super::{print_json, value_name, Mode, PrecisionArg, Variant};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Generates N problems per configuration in memory (render + .npz encoding) on all cores.
    Generate(GenerateArgs),
    /// Streams N problems from a dataset folder into shuffled (B,16,160,160) batches.
    Loader(LoaderArgs),
    /// Times N SCL training steps on random data after one warm-up step.
    Train(TrainArgs),
    /// One hand-written kernel against libtorch's path in one process: training (or
    /// mask-training) steps with it on and off, round by round in alternating order (median
    /// step each), and the sign test.
    /// The kernels are the CPU's (f32): on a GPU both sides take libtorch's path.
    Switch(SwitchArgs),
    /// Times N mask-training steps (frozen weights, K samples in one batched pass).
    Mask(MaskArgs),
    /// Times graph modularity (spectral clustering + Q) on a planted MLP graph of about N nodes.
    Modularity(ModularityArgs),
    /// This CPU's practical peaks: n × n matrix products in f32 and bf16 (GFLOP/s) and memory
    /// bandwidth, read and copy (GB/s).
    Gemm(GemmArgs),
    /// The official SCL training step stage by stage: FLOPs and measured forward + backward time.
    Stages(StagesArgs),
    /// The official SCL's work per problem from its layer shapes (no timing): the roofline's FLOPs.
    Flops(FlopsArgs),
    /// Paired speed ratios against a target (no timing): median with its 95 % interval, runs
    /// above and below, one-sided sign test. `make bench` judges its targets with it.
    Ratios(RatiosArgs),
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        BenchCommand::Generate(args) => generate(args),
        BenchCommand::Loader(args) => loader(args),
        BenchCommand::Train(args) => train(args),
        BenchCommand::Switch(args) => switch(args),
        BenchCommand::Mask(args) => mask(args),
        BenchCommand::Modularity(args) => modularity(args),
        BenchCommand::Gemm(args) => gemm(args),
        BenchCommand::Stages(args) => stages(args),
        BenchCommand::Flops(args) => flops(args),
        BenchCommand::Ratios(args) => ratios(args),
    }
}

/// The model and step settings shared by the timing benchmarks.
#[derive(clap::Args)]
struct BenchModel {
    /// official or seed.
    #[arg(long, value_enum, default_value = "official")]
    variant: Variant,
    #[arg(long, default_value_t = 80)]
    size: i64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
}

impl BenchModel {
    /// A freshly initialised model (seed 0) on the session's device.
    fn model(&self) -> SclModel {
        SclModel::init(
            self.variant.at_size(self.size),
            0,
            session::default_device(),
        )
    }
}

#[derive(clap::Args)]
struct GenerateArgs {
    #[arg(long, default_value_t = 200)]
    per_config: usize,
    #[arg(long, value_enum, default_value = "iraven")]
    mode: Mode,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also write the problems into fresh folders under DIR, in the same run: stored with a
    /// per-file fsync (the writer before 2026-12-02), stored without, and deflated without.
    #[arg(long)]
    to_disk: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Problems written per second into `dir/<label>` (emptied first).
fn written_per_s(
    cfg: &GeneratorConfig,
    dir: &std::path::Path,
    label: &str,
    durability: Durability,
    packing: Packing,
) -> Result<f64> {
    let out = dir.join(label);
    let _ = std::fs::remove_dir_all(&out);
    // Every writer starts on a clean page cache: the previous writer's dirty pages must not be
    // flushed on this one's time.
    let _ = std::process::Command::new("sync").status();
    let cfg = GeneratorConfig {
        packing,
        ..cfg.clone()
    };
    let report = generate_dataset_with(&cfg, &out, false, durability)?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(report.problems_per_s)
}

fn generate(args: GenerateArgs) -> Result<()> {
    let cfg = GeneratorConfig {
        per_config: args.per_config,
        mode: args.mode.into(),
        threads: args.threads,
        ..Default::default()
    };
    let problems_per_s = bench_generate(&cfg)?;
    let disk = match &args.to_disk {
        Some(dir) => Some((
            written_per_s(&cfg, dir, "synced", Durability::Synced, Packing::Stored)?,
            written_per_s(&cfg, dir, "unsynced", Durability::Unsynced, Packing::Stored)?,
            written_per_s(
                &cfg,
                dir,
                "deflated",
                Durability::Unsynced,
                Packing::Deflated,
            )?,
        )),
        None => None,
    };
    let threads = match args.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let (mode, problems) = (value_name(&args.mode), 7 * args.per_config);
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "generate",
            "problems_per_s": problems_per_s,
            "written_per_s_fsync_each": disk.map(|d| d.0),
            "written_per_s": disk.map(|d| d.1),
            "written_per_s_deflated": disk.map(|d| d.2),
            "problems": problems,
            "mode": mode,
            "threads": threads,
        }));
    }
    println!(
        "generate ({mode}, {problems} problems, {threads} threads): {problems_per_s:.0} problems/s"
    );
    if let Some((synced, unsynced, deflated)) = disk {
        println!(
            "written: {unsynced:.0} problems/s stored ({synced:.0} with an fsync per file), \
             {deflated:.0} deflated"
        );
    }
    Ok(())
}

#[derive(clap::Args)]
struct LoaderArgs {
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 2000)]
    n: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Keep u8 pixels instead of converting to f32 in [0, 1].
    #[arg(long)]
    u8: bool,
    #[arg(long)]
    json: bool,
}

fn loader(args: LoaderArgs) -> Result<()> {
    session::setup(0);
    let dataset = AvrDataset::open(&args.data)?;
    let cfg = LoaderConfig {
        batch_size: args.batch,
        workers: args.workers,
        options: BatchOptions {
            to_unit_float: !args.u8,
            ..Default::default()
        },
        ..Default::default()
    };
    let problems_per_s = bench_loader(&dataset, args.n, &cfg)?;
    let (n, batch, workers) = (args.n, args.batch, args.workers);
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "loader",
            "problems_per_s": problems_per_s,
            "problems": n,
            "batch": batch,
            "workers": workers,
            "dtype": if args.u8 { "u8" } else { "f32" },
        }));
    }
    println!(
        "loader ({n} problems, batch {batch}, {workers} workers): {problems_per_s:.0} problems/s"
    );
    Ok(())
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    model: BenchModel,
    /// The number format of the convolutions and matrix products.
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    #[arg(long)]
    json: bool,
}

fn train(args: TrainArgs) -> Result<()> {
    let s = session::setup(0);
    let m = &args.model;
    let times = bench_steps(m.model(), m.batch, m.steps, args.precision.checked()?)?;
    let problems_per_s = times.problems_per_s();
    let variant = value_name(&m.variant);
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "train",
            "precision": value_name(&args.precision),
            "problems_per_s": problems_per_s,
            "problems_per_s_mean": times.problems_per_s_mean(),
            "variant": variant,
            "size": m.size,
            "batch": m.batch,
            "steps": m.steps,
            "threads": s.threads,
            "device": s.device,
        }));
    }
    println!(
        "train {variant}@{}, batch {}: {problems_per_s:.2} problems/s",
        m.size, m.batch
    );
    Ok(())
}

#[derive(clap::Args)]
struct SwitchArgs {
    /// The kernel to compare with libtorch's path.
    #[arg(long, value_enum)]
    kernel: KernelArg,
    /// Rounds, each one run with the kernel and one without.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Timed steps per run (after two warm-up steps), official SCL.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// The step timed: training, or mask training (K = 4 samples in one batched pass; only the
    /// experts' kernel acts there).
    #[arg(long, value_enum, default_value = "train")]
    step: StepArg,
    /// The number format of the training step's convolutions and matrix products (mask steps
    /// are f32).
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    #[arg(long, default_value_t = 80)]
    size: i64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StepArg {
    /// A training step (`avr bench train`).
    Train,
    /// A mask-training step (`avr bench mask`, K = 4).
    Mask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KernelArg {
    /// The first conv block (`AVR_FUSED_FIRST_BLOCK`).
    FirstBlock,
    /// The relation experts' MLPs (`AVR_FUSED_EXPERTS`).
    Experts,
    /// AdamW on flat buffers (`AVR_FLAT_ADAM`; off: one tensor at a time).
    FlatAdam,
}

fn switch(args: SwitchArgs) -> Result<()> {
    let s = session::setup(0);
    let kernel = match args.kernel {
        KernelArg::FirstBlock => KernelSwitch::FirstBlock,
        KernelArg::Experts => KernelSwitch::Experts,
        KernelArg::FlatAdam => KernelSwitch::FlatAdam,
    };
    let precision = args.precision.checked()?;
    let refused = |why: String| {
        Err(avr_modularity::Error::Config(format!(
            "avr bench switch: {why}"
        )))
    };
    let same_code = "so both sides would run the same code";
    if args.step == StepArg::Mask && precision != Precision::F32 {
        return refused("mask steps are f32; --precision applies to training steps".into());
    }
    if args.step == StepArg::Mask && !kernel.acts_in_mask_steps() {
        return refused(format!(
            "{} does not act in mask steps (only the experts' kernel does), {same_code}",
            kernel.variable()
        ));
    }
    if precision == Precision::Bf16 && !kernel.acts_in_bf16_steps() {
        return refused(format!(
            "{} does not act in bf16 steps, {same_code}",
            kernel.variable()
        ));
    }
    let model = BenchModel {
        variant: Variant::Official,
        size: args.size,
        batch: args.batch,
        steps: args.steps,
    };
    let median_step = || -> Result<f64> {
        let times = match args.step {
            StepArg::Train => bench_steps(model.model(), model.batch, model.steps, precision)?,
            StepArg::Mask => bench_mask_steps(
                &model.model(),
                model.batch,
                4,
                model.steps,
                SampleBatching::Batched,
            )?,
        };
        Ok(times.median())
    };
    let comparison = compare_switch(kernel, args.rounds as usize, median_step)?;
    let step = value_name(&args.step);
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "switch",
            "comparison": comparison,
            "step": step,
            "precision": value_name(&args.precision),
            "size": args.size,
            "batch": args.batch,
            "steps": args.steps,
            "threads": s.threads,
            "device": s.device,
        }));
    }
    println!(
        "{step} official@{} ({}), batch {}, {} timed steps a run:",
        args.size,
        value_name(&args.precision),
        args.batch,
        args.steps
    );
    println!("{comparison}");
    Ok(())
}

#[derive(clap::Args)]
struct MaskArgs {
    #[command(flatten)]
    model: BenchModel,
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// K separate passes (the study's way) instead of one K-batched pass.
    #[arg(long)]
    separate: bool,
    #[arg(long)]
    json: bool,
}

fn mask(args: MaskArgs) -> Result<()> {
    let s = session::setup(0);
    let m = &args.model;
    let batching = match args.separate {
        true => SampleBatching::Separate,
        false => SampleBatching::Batched,
    };
    let times = bench_mask_steps(&m.model(), m.batch, args.samples, m.steps, batching)?;
    let problems_per_s = times.problems_per_s();
    let variant = value_name(&m.variant);
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "mask",
            "problems_per_s": problems_per_s,
            "problems_per_s_mean": times.problems_per_s_mean(),
            "variant": variant,
            "size": m.size,
            "batch": m.batch,
            "samples": args.samples,
            "steps": m.steps,
            "batching": batching,
            "threads": s.threads,
            "device": s.device,
        }));
    }
    println!(
        "mask {variant}@{}, batch {}, K {}: {problems_per_s:.2} problems/s",
        m.size, m.batch, args.samples
    );
    Ok(())
}

#[derive(clap::Args)]
struct ModularityArgs {
    #[arg(long, default_value_t = 2000)]
    nodes: usize,
    #[arg(long, default_value_t = 8)]
    k: usize,
    #[arg(long, default_value_t = 25)]
    restarts: usize,
    #[arg(long)]
    json: bool,
}

fn modularity(args: ModularityArgs) -> Result<()> {
    session::setup(0);
    let (k, restarts) = (args.k, args.restarts);
    // 5 layers of width nodes/5, k planted groups.
    let width = (args.nodes / 5).max(k);
    let graph = WeightGraph::from_mlp(&planted_mlp(4, width, k, 1.0, 0.1))?;
    let start = std::time::Instant::now();
    // The benchmark times one clustering and Q (no null model), as BENCHMARKS.md records.
    let cfg = ModularityConfig {
        k,
        restarts,
        shuffles: 0,
        ..Default::default()
    };
    let report = graph_modularity(&graph, &cfg)?;
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "modularity",
            "nodes": report.nodes,
            "k": k,
            "restarts": restarts,
            "seconds": seconds,
            "q": report.q,
            "threads": tch::get_num_threads(),
        }));
    }
    println!(
        "modularity: {} nodes, k {k}, {restarts} k-means restarts: {seconds:.2} s (Q = {:.4})",
        report.nodes, report.q
    );
    Ok(())
}

#[derive(clap::Args)]
struct GemmArgs {
    #[arg(long, default_value_t = 2048)]
    n: i64,
    /// Buffer of the memory-bandwidth passes, in MB (far above the caches).
    #[arg(long, default_value_t = 512)]
    megabytes: usize,
    #[arg(long, default_value_t = 10)]
    reps: usize,
    #[arg(long)]
    json: bool,
}

fn gemm(args: GemmArgs) -> Result<()> {
    session::setup(0);
    // Without native bf16 the products are emulated (0.3 GFLOP/s on an AVX2 EPYC: ten
    // minutes for the timed products), so that peak is measured only where it exists.
    let native_bf16 = session::simd_level() == "avx512_bf16";
    let kinds: &[tch::Kind] = match native_bf16 {
        true => &[tch::Kind::Float, tch::Kind::BFloat16],
        false => &[tch::Kind::Float],
    };
    let peaks = kinds
        .iter()
        .map(|&kind| gemm_peak(args.n, kind, args.reps))
        .collect::<Result<Vec<_>>>()?;
    let bandwidth = memory_bandwidth(args.megabytes, args.reps)?;
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "gemm",
            "peaks": peaks,
            "bandwidth": bandwidth,
        }));
    }
    for p in &peaks {
        println!(
            "gemm {} n = {}, {} threads: {:.1} GFLOP/s",
            p.kind, p.n, p.threads, p.gflops
        );
    }
    if !native_bf16 {
        println!("gemm bfloat16: not measured, this CPU has no AVX-512-BF16 (emulated)");
    }
    for b in &bandwidth {
        println!(
            "memory {} of {:.0} MB, {} threads: {:.1} GB/s",
            b.pattern, b.megabytes, b.threads, b.gb_per_s
        );
    }
    Ok(())
}

#[derive(clap::Args)]
struct StagesArgs {
    #[arg(long, default_value_t = 32)]
    batch: i64,
    #[arg(long, default_value_t = 10)]
    reps: usize,
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    #[arg(long)]
    json: bool,
}

fn stages(args: StagesArgs) -> Result<()> {
    session::setup(0);
    // The update as training runs it (`TrainConfig`'s AdamW settings, weight decay included).
    let adam = TrainConfig::default().adam();
    let stages = official_stage_times(args.batch, args.precision.checked()?, args.reps, &adam)?;
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "stages",
            "precision": value_name(&args.precision),
            "batch": args.batch,
            "stages": stages,
        }));
    }
    let total: f64 = stages.iter().map(|s| s.seconds).sum();
    for s in &stages {
        println!(
            "{:<40} {:>7.1} ms ({:>4.1} %) {:>6.2} GFLOP {:>6.1} GFLOP/s",
            s.stage,
            s.seconds * 1e3,
            100.0 * s.seconds / total,
            s.flops / 1e9,
            s.flops / s.seconds / 1e9
        );
    }
    Ok(())
}

#[derive(clap::Args)]
struct FlopsArgs {
    #[arg(long)]
    json: bool,
}

fn flops(args: FlopsArgs) -> Result<()> {
    let stages = official_stage_flops(&OfficialSclConfig::default());
    let step_per_problem: f64 = stages.iter().map(|s| s.step()).sum();
    if args.json {
        return print_json(&serde_json::json!({
            "bench": "flops",
            "stages": stages,
            "step_flops_per_problem": step_per_problem,
        }));
    }
    for s in &stages {
        println!(
            "{:<40} {:>8.4} GFLOP forward + backward",
            s.stage,
            s.step() / 1e9
        );
    }
    println!(
        "{:<40} {:>8.4} GFLOP per problem",
        "total",
        step_per_problem / 1e9
    );
    Ok(())
}

#[derive(clap::Args)]
struct RatiosArgs {
    /// The target ratio (e.g. 2 for "≥ 2× the anchor").
    #[arg(long)]
    target: f64,
    /// The runs' ratios, ours ÷ the anchor that ran beside it.
    #[arg(required = true, num_args = 1.., allow_negative_numbers = true)]
    ratios: Vec<f64>,
    #[arg(long)]
    json: bool,
}

fn ratios(args: RatiosArgs) -> Result<()> {
    if let Some(bad) = args.ratios.iter().find(|r| !r.is_finite() || **r <= 0.0) {
        return Err(avr_modularity::Error::Config(format!(
            "avr bench ratios: {bad} is not a speed ratio (finite and above 0)"
        )));
    }
    let s = RatioSummary::new(&args.ratios, args.target);
    if args.json {
        return print_json(&s);
    }
    let interval = match s.median_interval_95 {
        Some((lo, hi)) => format!("{lo:.2}–{hi:.2}"),
        None => "— (n < 6)".into(),
    };
    println!(
        "median {:.2} (95 % interval {interval}) over n = {} runs; {} above {} and {} below \
         (one-sided sign test p = {:.4})",
        s.median,
        s.ratios.len(),
        s.above,
        s.target,
        s.below,
        s.sign_test_above_p
    );
    Ok(())
}
