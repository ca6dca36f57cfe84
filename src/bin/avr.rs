//! `avr` — the command-line face of avr-modularity: every pipeline step for headless and
//! cluster runs. Logic lives in the library; this file only parses arguments and prints.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use avr_modularity::analysis::graph::{graph_modularity, ModularityConfig, WeightGraph};
use avr_modularity::analysis::masks::{mask_stats, sharing_matrix, Overlap};
use avr_modularity::checkpoint::looks_like_pickle;
use avr_modularity::data::dataset::BatchOptions;
use avr_modularity::data::generate::{
    bench_generate, generate_dataset, CandidateMode, GeneratorConfig,
};
use avr_modularity::data::loader::{bench_loader, LoaderConfig};
use avr_modularity::data::{inspect, AvrDataset, Split};
use avr_modularity::masking::engine::{
    bench_mask_steps, train_mask, MaskFilter, MaskSidecar, MaskTrainConfig, SampleBatching,
};
use avr_modularity::masking::toy::{run_toy, ToyConfig, ToyTask};
use avr_modularity::masking::Mask;
use avr_modularity::model::{OfficialSclConfig, SclModel, SclVariant, SeedSclConfig};
use avr_modularity::plot::sharing_heatmap;
use avr_modularity::train::eval::{evaluate, EvalOptions};
use avr_modularity::train::trainer::load_checkpoint;
use avr_modularity::train::{train, TrainConfig};
use avr_modularity::{session, Error, Result};

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
    Info {
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Generate an I-RAVEN (default) or RAVEN dataset: `OUT/<config>/RAVEN_<k>_<split>.npz`,
    /// split by k mod 10 (0–5 train, 6–7 val, 8–9 test). Existing files are kept (resume).
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// originals, circles, squares, triangles, pentagons, hexagons, lights, dark or big.
        #[arg(long, default_value = "originals")]
        preset: String,
        /// `all` or a comma-separated list of configuration folder names.
        #[arg(long, default_value = "all")]
        configs: String,
        #[arg(long, default_value_t = 10)]
        per_config: usize,
        /// iraven (balanced candidates) or raven (original candidates).
        #[arg(long, default_value = "iraven")]
        mode: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Worker threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Also write the XML annotation next to each file.
        #[arg(long)]
        xml: bool,
        #[arg(long)]
        json: bool,
    },
    /// Keys, dtypes, shapes, target, predict and configuration of problem files.
    Inspect {
        files: Vec<PathBuf>,
        /// One JSON object per file.
        #[arg(long)]
        json: bool,
    },
    /// Accuracy of a checkpoint (optionally under a mask) on a dataset folder.
    Eval {
        /// A checkpoint: ours (`.safetensors` + `.json`) or the study's pickled `.ckpt` (detected by content).
        #[arg(long)]
        ckpt: PathBuf,
        /// Dataset folder in either layout.
        #[arg(long)]
        data: PathBuf,
        /// train, val, test or all.
        #[arg(long, default_value = "all")]
        split: String,
        /// Transpose panels as the study's loader did (needed for its checkpoint).
        #[arg(long)]
        transpose_panels: bool,
        /// Evaluate under this mask (the study's mask pickles).
        #[arg(long)]
        mask: Option<PathBuf>,
        /// Use the inverted mask (1 − mask).
        #[arg(long)]
        invert_mask: bool,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Mask statistics and sharing.
    Mask {
        #[command(subcommand)]
        command: MaskCommand,
    },
    /// Train SCL on a dataset folder with milestone checkpoints.
    Train {
        #[arg(long)]
        data: PathBuf,
        /// official (default) or seed.
        #[arg(long, default_value = "official")]
        variant: String,
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
        #[arg(long, default_value = "50,60,70,80,90")]
        milestones: String,
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
    },
    /// The masking method's validation tasks: add/mul (P_specialize) and double addition (P_reuse).
    Toy {
        /// addmul or double-add.
        task: String,
        #[arg(long, default_value_t = 2)]
        digits: usize,
        /// Hidden widths, comma separated.
        #[arg(long, default_value = "400,400,200")]
        hidden: String,
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
    },
    /// Write the HTML report of a run: module tables and plots by measured checkpoint accuracy,
    /// sharing matrices, graph modularity, plus any extra HTML sections.
    Report {
        /// Folder of trained masks (`*.safetensors` + `.json`).
        #[arg(long)]
        masks: PathBuf,
        #[arg(long, default_value = "report/index.html")]
        out: PathBuf,
        /// Extra sections: `TITLE=FILE` (FILE holds HTML, or text shown verbatim if it ends in .txt/.json).
        #[arg(long)]
        section: Vec<String>,
        /// A training log (`metrics.csv` of `avr train`), drawn as training curves.
        #[arg(long)]
        metrics: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        shuffles: usize,
    },
    /// Benchmarks (figures go to BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Graph modularity (spectral clustering, Newman Q, n-cut, shuffle null model).
    Modularity {
        /// The vision conv stack of an SCL checkpoint (channel graph, BatchNorm folded).
        #[arg(long, conflicts_with = "weights")]
        ckpt: Option<PathBuf>,
        /// A safetensors file of an MLP: `layers.<i>.weight` tensors `[out, in]`, in order.
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value_t = 8)]
        k: usize,
        #[arg(long, default_value_t = 1.0)]
        gamma: f64,
        #[arg(long, default_value_t = 0)]
        shuffles: usize,
        #[arg(long, default_value_t = 25)]
        restarts: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
}

/// The model and step settings shared by the timing benchmarks.
#[derive(clap::Args)]
struct BenchModel {
    /// official or seed.
    #[arg(long, default_value = "official")]
    variant: String,
    #[arg(long, default_value_t = 80)]
    size: i64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Generates N problems per configuration in memory (render + .npz encoding) on all cores.
    Generate {
        #[arg(long, default_value_t = 200)]
        per_config: usize,
        #[arg(long, default_value = "iraven")]
        mode: String,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Streams N problems from a dataset folder into shuffled (B,16,160,160) batches.
    Loader {
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
    },
    /// Times N SCL training steps on random data after one warm-up step.
    Train {
        #[command(flatten)]
        model: BenchModel,
        #[arg(long)]
        json: bool,
    },
    /// Times N mask-training steps (frozen weights, K samples in one batched pass).
    Mask {
        #[command(flatten)]
        model: BenchModel,
        #[arg(long, default_value_t = 4)]
        samples: usize,
        /// K separate passes (the study's way) instead of one K-batched pass.
        #[arg(long)]
        separate: bool,
        #[arg(long)]
        json: bool,
    },
    /// Times graph modularity (spectral clustering + Q) on a planted MLP graph of about N nodes.
    Modularity {
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        #[arg(long, default_value_t = 8)]
        k: usize,
        #[arg(long, default_value_t = 25)]
        restarts: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MaskCommand {
    /// Train a binary weight mask for a task dataset on a frozen checkpoint.
    Train {
        #[arg(long)]
        ckpt: PathBuf,
        /// Task dataset folder (e.g. the `squares` preset); its train split trains the mask.
        #[arg(long)]
        task: PathBuf,
        /// Control dataset folder (`originals`) for the control and inverted accuracies.
        #[arg(long)]
        control: Option<PathBuf>,
        #[arg(long, default_value_t = 2.1877616e-6)]
        alpha: f64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 500)]
        steps: usize,
        #[arg(long, default_value_t = 4)]
        samples: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 1e-2)]
        lr: f64,
        #[arg(long, default_value_t = 2.5)]
        logit_init: f64,
        #[arg(long, default_value_t = 100)]
        eval_every: usize,
        /// Mask only weight matrices and kernels (not biases or norms).
        #[arg(long)]
        weights_only: bool,
        #[arg(long)]
        transpose_panels: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Kept fraction, sparsity, dispersity and per-tensor kept counts of each mask.
    Stats {
        masks: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Pairwise overlap of masks in percent.
    Sharing {
        masks: Vec<PathBuf>,
        /// iomin (the study's) or iou.
        #[arg(long, default_value = "iomin")]
        metric: String,
        /// Remove the weights kept by every mask first (the study's preprocessing).
        #[arg(long)]
        preprocess: bool,
        #[arg(long)]
        json: bool,
        /// Also write the heatmap as SVG.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("avr: error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { seed, json } => info(seed, json),
        Command::Inspect { files, json } => inspect_files(&files, json),
        Command::Toy {
            task,
            digits,
            hidden,
            train_steps,
            mask_steps,
            beta,
            seed,
            json,
        } => {
            session::setup(seed);
            let task = match task.as_str() {
                "addmul" => ToyTask::AddMul,
                "double-add" => ToyTask::DoubleAdd,
                other => {
                    return Err(Error::Config(format!(
                        "toy task '{other}': expected addmul or double-add"
                    )))
                }
            };
            let hidden = hidden
                .split(',')
                .map(|h| {
                    h.trim()
                        .parse::<i64>()
                        .map_err(|_| Error::Config(format!("--hidden: bad width '{h}'")))
                })
                .collect::<Result<Vec<_>>>()?;
            let cfg = ToyConfig {
                task,
                digits,
                hidden,
                train_steps,
                mask_steps,
                beta,
                seed,
                ..Default::default()
            };
            let report = run_toy(&cfg, session::default_device())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(|e| Error::Config(e.to_string()))?
                );
            } else {
                println!(
                    "{}\n{}",
                    report.accuracy_table()?.df,
                    report.layer_table()?.df
                );
            }
            Ok(())
        }
        Command::Report {
            masks,
            out,
            section,
            metrics,
            shuffles,
        } => {
            session::setup(0);
            let sections = section
                .iter()
                .map(|s| {
                    let (title, file) = s.split_once('=').ok_or_else(|| {
                        Error::Config(format!("--section {s}: expected TITLE=FILE"))
                    })?;
                    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
                    let verbatim = [".txt", ".json", ".csv"].iter().any(|x| file.ends_with(x));
                    Ok((
                        title.to_string(),
                        if verbatim {
                            format!("<pre>{}</pre>", avr_modularity::display::escape_html(&text))
                        } else {
                            text
                        },
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut sections = sections;
            if let Some(csv) = metrics {
                let rows = avr_modularity::train::trainer::read_metrics_csv(&csv)?;
                sections.push((
                    "Training".into(),
                    avr_modularity::train::trainer::training_curves(&rows)?.to_html(),
                ));
            }
            avr_modularity::report::write_report(&out, &masks, shuffles, &sections)?;
            println!("{}", out.display());
            Ok(())
        }
        Command::Generate {
            out,
            preset,
            configs,
            per_config,
            mode,
            seed,
            threads,
            xml,
            json,
        } => {
            let cfg = GeneratorConfig {
                preset,
                configs: parse_configs(&configs)?,
                per_config,
                mode: parse_mode(&mode)?,
                seed,
                threads,
                xml,
            };
            let report = generate_dataset(&cfg, &out, !json)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(|e| Error::Config(e.to_string()))?
                );
            } else {
                println!(
                    "{}: {} written, {} kept, {:.1} s ({:.0} problems/s)",
                    report.out.display(),
                    report.written,
                    report.skipped,
                    report.seconds,
                    report.problems_per_s
                );
            }
            Ok(())
        }
        Command::Eval {
            ckpt,
            data,
            split,
            transpose_panels,
            mask,
            invert_mask,
            batch,
            json,
        } => {
            let model = load_model(&ckpt)?;
            let splits = parse_splits(&split)?;
            let dataset = AvrDataset::open(&data)?.select(&splits, None);
            let mask = mask.map(Mask::load).transpose()?;
            let opts = EvalOptions {
                batch_size: batch,
                batch: BatchOptions {
                    transpose_panels,
                    resize: Some(model.image_size()),
                    ..Default::default()
                },
                invert_mask,
                ..Default::default()
            };
            let report = evaluate(&model, mask.as_ref(), &dataset, &opts)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(|e| Error::Config(e.to_string()))?
                );
            } else {
                for (config, (c, n)) in &report.per_configuration {
                    println!(
                        "{config:<40} {c:>5}/{n:<5} {:6.2} %",
                        100.0 * *c as f64 / *n as f64
                    );
                }
                println!(
                    "{:<40} {:>5}/{:<5} {:6.2} %",
                    "all",
                    report.correct,
                    report.n,
                    100.0 * report.accuracy
                );
            }
            Ok(())
        }
        Command::Mask {
            command:
                MaskCommand::Train {
                    ckpt,
                    task,
                    control,
                    alpha,
                    out,
                    steps,
                    samples,
                    batch,
                    lr,
                    logit_init,
                    eval_every,
                    weights_only,
                    transpose_panels,
                    seed,
                    json,
                },
        } => {
            session::setup(seed);
            let (model, base_accuracy) = load_model_with_accuracy(&ckpt)?;
            let model = model.to_device(session::default_device());
            let task_set = AvrDataset::open(&task)?;
            let (train_split, val_split) = (
                task_set.select(&[Split::Train], None),
                task_set.select(&[Split::Val, Split::Test], None),
            );
            let control_set = control
                .as_ref()
                .map(AvrDataset::open)
                .transpose()?
                .map(|c| c.select(&[Split::Val, Split::Test], None));
            let cfg = MaskTrainConfig {
                alpha,
                steps,
                samples,
                batch_size: batch,
                lr,
                logit_init,
                eval_every,
                seed,
                filter: if weights_only {
                    MaskFilter::WeightsOnly
                } else {
                    MaskFilter::All
                },
                batch: BatchOptions {
                    transpose_panels,
                    resize: Some(model.image_size()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let name = task
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "mask".into());
            let run = train_mask(
                &model,
                &name,
                &train_split,
                &val_split,
                control_set.as_ref(),
                &cfg,
            )?;
            run.save(
                &out,
                &ckpt.display().to_string(),
                &model,
                base_accuracy,
                &task.display().to_string(),
                control.as_ref().map(|c| c.display().to_string()).as_deref(),
            )?;
            let side: MaskSidecar = avr_modularity::checkpoint::read_sidecar(&out)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&side).map_err(|e| Error::Config(e.to_string()))?
                )
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&side).unwrap_or_default()
                )
            }
            Ok(())
        }
        Command::Mask {
            command: MaskCommand::Stats { masks, json },
        } => {
            for path in masks {
                let stats = mask_stats(&Mask::load(&path)?);
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&stats).map_err(|e| Error::Config(e.to_string()))?
                    );
                } else {
                    println!(
                        "{:<24} kept {:>7}/{} ({:6.2} %)  sparsity {:6.2} %  dispersity {:.4}",
                        stats.name,
                        stats.kept,
                        stats.total,
                        100.0 * stats.kept_fraction,
                        stats.sparsity,
                        stats.dispersity
                    );
                }
            }
            Ok(())
        }
        Command::Mask {
            command:
                MaskCommand::Sharing {
                    masks,
                    metric,
                    preprocess,
                    json,
                    svg,
                },
        } => {
            let metric = Overlap::parse(&metric).ok_or_else(|| {
                Error::Config(format!("--metric {metric}: expected iomin or iou"))
            })?;
            let masks = masks.iter().map(Mask::load).collect::<Result<Vec<_>>>()?;
            let m = sharing_matrix(&masks, metric, preprocess)?;
            if let Some(svg) = svg {
                sharing_heatmap(&m, None)?.save_svg(svg)?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"names": m.names, "matrix": m.matrix, "metric": m.metric, "preprocessed": m.preprocessed, "shared_by_all": m.shared_by_all})
                );
            } else {
                println!("{}", m.table()?.df);
            }
            Ok(())
        }
        Command::Train {
            data,
            variant,
            size,
            steps,
            batch,
            lr,
            val_every,
            milestones,
            seed,
            out,
            state_every,
            resume,
            json,
        } => {
            session::setup(seed);
            let device = session::default_device();
            let model = SclModel::init(parse_variant(&variant, size)?, seed, device);
            let all = AvrDataset::open(&data)?;
            let (train_set, val_set) = (
                all.select(&[Split::Train], None),
                all.select(&[Split::Val], None),
            );
            let milestones = milestones
                .split(',')
                .map(|m| {
                    m.trim()
                        .parse::<f64>()
                        .map(|v| v / 100.0)
                        .map_err(|_| Error::Config(format!("--milestones: bad level '{m}'")))
                })
                .collect::<Result<Vec<_>>>()?;
            let cfg = TrainConfig {
                steps,
                batch_size: batch,
                lr,
                val_every,
                milestones,
                seed,
                state_every,
                resume,
                batch: BatchOptions {
                    resize: Some(size),
                    ..Default::default()
                },
                ..Default::default()
            };
            let run = train(model, &train_set, &val_set, &cfg, Some(&out))?;
            let csv = out.join("metrics.csv");
            avr_modularity::train::trainer::write_metrics_csv(&csv, &run.metrics)?;
            let summary = serde_json::json!({"milestones": run.milestones, "metrics_csv": csv, "final_val_accuracy": run.metrics.iter().rev().find_map(|r| r.val_accuracy)});
            if json {
                println!("{summary}")
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                )
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Generate {
                    per_config,
                    mode,
                    threads,
                    json,
                },
        } => {
            let cfg = GeneratorConfig {
                per_config,
                mode: parse_mode(&mode)?,
                threads,
                ..Default::default()
            };
            let problems_per_s = bench_generate(&cfg)?;
            let threads = if threads > 0 {
                threads
            } else {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            };
            let value = serde_json::json!({"bench": "generate", "problems_per_s": problems_per_s, "problems": 7 * per_config, "mode": mode, "threads": threads});
            if json {
                println!("{value}")
            } else {
                println!("generate ({mode}, {} problems, {threads} threads): {problems_per_s:.0} problems/s", 7 * per_config)
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Loader {
                    data,
                    n,
                    batch,
                    workers,
                    u8,
                    json,
                },
        } => {
            session::setup(0);
            let dataset = AvrDataset::open(&data)?;
            let cfg = LoaderConfig {
                batch_size: batch,
                workers,
                options: BatchOptions {
                    to_unit_float: !u8,
                    ..Default::default()
                },
                ..Default::default()
            };
            let problems_per_s = bench_loader(&dataset, n, &cfg)?;
            let value = serde_json::json!({"bench": "loader", "problems_per_s": problems_per_s, "problems": n, "batch": batch, "workers": workers, "dtype": if u8 { "u8" } else { "f32" }});
            if json {
                println!("{value}")
            } else {
                println!("loader ({n} problems, batch {batch}, {workers} workers): {problems_per_s:.0} problems/s")
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Train {
                    model:
                        BenchModel {
                            variant,
                            size,
                            batch,
                            steps,
                        },
                    json,
                },
        } => {
            let s = session::setup(0);
            let device = session::default_device();
            let model = SclModel::init(parse_variant(&variant, size)?, 0, device);
            let times = avr_modularity::train::trainer::bench_steps(model, batch, steps)?;
            let problems_per_s = times.problems_per_s();
            let value = serde_json::json!({"bench": "train", "problems_per_s": problems_per_s, "problems_per_s_mean": times.problems_per_s_mean(), "variant": variant, "size": size, "batch": batch, "steps": steps, "threads": s.threads, "device": s.device});
            if json {
                println!("{value}")
            } else {
                println!("train {variant}@{size}, batch {batch}: {problems_per_s:.2} problems/s")
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Mask {
                    model:
                        BenchModel {
                            variant,
                            size,
                            batch,
                            steps,
                        },
                    samples,
                    separate,
                    json,
                },
        } => {
            let s = session::setup(0);
            let model =
                SclModel::init(parse_variant(&variant, size)?, 0, session::default_device());
            let batching = if separate {
                SampleBatching::Separate
            } else {
                SampleBatching::Batched
            };
            let times = bench_mask_steps(&model, batch, samples, steps, batching)?;
            let problems_per_s = times.problems_per_s();
            let value = serde_json::json!({"bench": "mask", "problems_per_s": problems_per_s, "problems_per_s_mean": times.problems_per_s_mean(), "variant": variant, "size": size, "batch": batch, "samples": samples, "steps": steps, "batching": batching, "threads": s.threads, "device": s.device});
            if json {
                println!("{value}")
            } else {
                println!("mask {variant}@{size}, batch {batch}, K {samples}: {problems_per_s:.2} problems/s")
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Modularity {
                    nodes,
                    k,
                    restarts,
                    json,
                },
        } => {
            session::setup(0);
            // 5 layers of width nodes/5, k planted groups.
            let width = (nodes / 5).max(k);
            let graph = WeightGraph::from_mlp(&avr_modularity::analysis::graph::planted_mlp(
                4, width, k, 1.0, 0.1,
            ))?;
            let start = std::time::Instant::now();
            let report = graph_modularity(
                &graph,
                &ModularityConfig {
                    k,
                    restarts,
                    ..Default::default()
                },
            )?;
            let seconds = start.elapsed().as_secs_f64();
            let value = serde_json::json!({"bench": "modularity", "nodes": report.nodes, "k": k, "restarts": restarts, "seconds": seconds, "q": report.q, "threads": tch::get_num_threads()});
            if json {
                println!("{value}")
            } else {
                println!("modularity: {} nodes, k {k}, {restarts} k-means restarts: {seconds:.2} s (Q = {:.4})", report.nodes, report.q)
            }
            Ok(())
        }
        Command::Modularity {
            ckpt,
            weights,
            k,
            gamma,
            shuffles,
            restarts,
            seed,
            json,
        } => {
            let graph = match (ckpt, weights) {
                (Some(ckpt), None) => load_model(&ckpt)?.vision_graph()?,
                (None, Some(weights)) => mlp_graph_from_safetensors(&weights)?,
                _ => {
                    return Err(Error::Config(
                        "give exactly one of --ckpt or --weights".into(),
                    ))
                }
            };
            let report = graph_modularity(
                &graph,
                &ModularityConfig {
                    k,
                    gamma,
                    restarts,
                    shuffles,
                    seed,
                },
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(|e| Error::Config(e.to_string()))?
                );
            } else {
                println!(
                    "nodes {} (layers {:?}), k {k}, γ {gamma}: Q = {:.6}, n-cut = {:.6}",
                    report.nodes, report.layer_sizes, report.q, report.ncut
                );
                if let (Some(m), Some(s), Some(z), Some(p)) =
                    (report.q_null_mean, report.q_null_std, report.z, report.p)
                {
                    println!("null model ({shuffles} layer shuffles): Q = {m:.6} ± {s:.6}, z = {z:.2}, p = {p:.4}");
                }
            }
            Ok(())
        }
    }
}

fn info(seed: u64, json: bool) -> Result<()> {
    let s = session::setup(seed);
    let cuda = tch::Cuda::is_available();
    if json {
        println!(
            "{}",
            serde_json::json!({"session": s, "cuda_available": cuda})
        );
    } else {
        println!(
            "avr-modularity {} · device {} · {} threads · CUDA available: {cuda}",
            s.crate_version, s.device, s.threads
        );
    }
    Ok(())
}

fn inspect_files(files: &[PathBuf], json: bool) -> Result<()> {
    for f in files {
        let s = inspect(f)?;
        if json {
            println!(
                "{}",
                serde_json::to_string(&s).map_err(|e| Error::Config(e.to_string()))?
            );
        } else {
            println!(
                "{}: {} target {} predict {}",
                f.display(),
                s.configuration.as_deref().unwrap_or("?"),
                s.target,
                s.predict
            );
            for ((k, d), sh) in s.keys.iter().zip(&s.dtypes).zip(&s.shapes) {
                println!("  {k:<15} {d:<6} {sh:?}");
            }
        }
    }
    Ok(())
}

fn parse_variant(variant: &str, size: i64) -> Result<SclVariant> {
    match variant {
        "official" => Ok(SclVariant::Official(OfficialSclConfig {
            image_size: size,
            ..Default::default()
        })),
        "seed" => Ok(SclVariant::Seed(SeedSclConfig {
            image_size: size,
            ..Default::default()
        })),
        other => Err(Error::Config(format!(
            "--variant {other}: expected official or seed"
        ))),
    }
}

fn parse_configs(configs: &str) -> Result<Vec<String>> {
    if configs == "all" {
        return Ok(avr_modularity::data::CONFIGURATIONS
            .iter()
            .map(|s| s.to_string())
            .collect());
    }
    configs
        .split(',')
        .map(|c| c.trim().to_string())
        .map(|c| {
            if avr_modularity::data::CONFIGURATIONS.contains(&c.as_str()) {
                Ok(c)
            } else {
                Err(Error::Config(format!(
                    "--configs: unknown configuration '{c}'"
                )))
            }
        })
        .collect()
}

fn parse_mode(mode: &str) -> Result<CandidateMode> {
    match mode {
        "iraven" => Ok(CandidateMode::Iraven),
        "raven" => Ok(CandidateMode::Raven),
        other => Err(Error::Config(format!(
            "--mode {other}: expected iraven or raven"
        ))),
    }
}

fn parse_splits(split: &str) -> Result<Vec<Split>> {
    if split == "all" {
        return Ok(Split::ALL.to_vec());
    }
    split
        .split(',')
        .map(|s| {
            Split::parse(s).ok_or_else(|| {
                Error::Config(format!("--split {s}: expected train, val, test or all"))
            })
        })
        .collect()
}

/// Checkpoints are told apart by content: the study's files are pickles, ours safetensors.
fn load_model(path: &Path) -> Result<SclModel> {
    Ok(load_model_with_accuracy(path)?.0)
}

/// The model and, for our checkpoints, the validation accuracy measured when it was saved.
fn load_model_with_accuracy(path: &Path) -> Result<(SclModel, Option<f64>)> {
    if looks_like_pickle(path) {
        Ok((SclModel::from_study_checkpoint(path)?, None))
    } else {
        let (model, side) = load_checkpoint(path)?;
        Ok((model, Some(side.measured_val_accuracy)))
    }
}

fn mlp_graph_from_safetensors(path: &Path) -> Result<WeightGraph> {
    let tensors =
        tch::Tensor::read_safetensors(path).map_err(|e| Error::bad_file(path, e.to_string()))?;
    let mut layers: Vec<(usize, tch::Tensor)> = tensors
        .into_iter()
        .filter_map(|(name, t)| {
            let index = name
                .strip_prefix("layers.")?
                .strip_suffix(".weight")?
                .parse()
                .ok()?;
            Some((index, t))
        })
        .collect();
    if layers.is_empty() {
        return Err(Error::bad_file(path, "no `layers.<i>.weight` tensors"));
    }
    layers.sort_by_key(|(i, _)| *i);
    WeightGraph::from_mlp(&layers.into_iter().map(|(_, t)| t).collect::<Vec<_>>())
}
