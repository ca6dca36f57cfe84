//! `avr mask train|stats|sharing|choose-alpha|ablate`: binary weight masks.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use avr_modularity::analysis::ablation::{ablate, Ablation, AblationConfig};
use avr_modularity::analysis::chance::{
    dispersity_chance, sharing_chance, ChanceConfig, DispersityChance, SharingChance,
};
use avr_modularity::analysis::masks::{mask_stats, sharing_matrix_with, MaskStats, Overlap};
use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::data::{AvrDataset, Shape, Split};
use avr_modularity::masking::bits::{Binarize, Decisiveness};
use avr_modularity::masking::engine::{
    alpha_record_from_masks, train_mask_resumable, Convergence, MaskFilter, MaskResume,
    MaskSidecar, MaskTask, MaskTrainConfig, RecordOutcomes, ALPHA_TOLERANCE,
};
use avr_modularity::masking::{Mask, MixedSettings};
use avr_modularity::plot::{sharing_chance_heatmap, sharing_heatmap};
use avr_modularity::{session, Result};

use super::{print_json, print_json_pretty};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: MaskCommand,
}

#[derive(Subcommand)]
enum MaskCommand {
    /// Train a binary weight mask for a task dataset on a frozen checkpoint.
    Train(TrainArgs),
    /// Kept fraction, sparsity, dispersity and per-tensor kept counts of each mask.
    Stats(StatsArgs),
    /// Pairwise overlap of masks in percent.
    Sharing(SharingArgs),
    /// The α stage: from one finished mask per α, the largest α whose validation task accuracy
    /// is within the tolerance of the smallest α's; writes the record (OUT, JSON).
    ChooseAlpha(ChooseAlphaArgs),
    /// What removing a module costs against removing as many random weights (the chance
    /// level), with tied scores counted; writes `<mask stem>.ablation.json` beside the mask.
    Ablate(AblateArgs),
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        MaskCommand::Train(args) => train(args),
        MaskCommand::Stats(args) => stats(args),
        MaskCommand::Sharing(args) => sharing(args),
        MaskCommand::ChooseAlpha(args) => choose_alpha(args),
        MaskCommand::Ablate(args) => ablate_mask(args),
    }
}

#[derive(clap::Args)]
struct TrainArgs {
    /// A checkpoint: ours or the study's pickled `.ckpt` (its panels are transposed automatically).
    #[arg(long)]
    ckpt: PathBuf,
    /// Task dataset folder (e.g. the `squares` preset); its train split trains the mask. Give
    /// it several times (comma separated) to pool the sets: the control mask on all shapes.
    #[arg(long, value_delimiter = ',', required = true)]
    task: Vec<PathBuf>,
    /// The mask's name (default: the task folder's name); replicates use `<task>-s<seed>`.
    #[arg(long)]
    name: Option<String>,
    /// The shape the task is about (default: read from the task folder's name, if it names one).
    #[arg(long, value_enum, ignore_case = true)]
    shape: Option<ShapeArg>,
    /// Control dataset folder (`originals`) for the control and inverted accuracies.
    #[arg(long)]
    control: Option<PathBuf>,
    #[arg(long, default_value_t = 2.1877616e-6)]
    alpha: f64,
    #[arg(long)]
    out: PathBuf,
    /// The step cap: training stops earlier once the mask has settled (see --settle-window).
    #[arg(long, default_value_t = 500)]
    steps: usize,
    /// Stopping rule: read the kept fraction and the |l| < 2 mass every N steps…
    #[arg(long, default_value_t = 50)]
    settle_every: usize,
    /// …and stop once each has moved by at most --settle-tolerance over this many readings.
    #[arg(long, default_value_t = 4)]
    settle_window: usize,
    /// Stopping rule: the largest range (fraction) of both readings over the window.
    #[arg(long, default_value_t = 0.002)]
    settle_tolerance: f64,
    /// Run all --steps, with no stopping rule.
    #[arg(long)]
    fixed_steps: bool,
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
    /// Save the resumable state every N steps (beside OUT, as `<stem>.resume`; 0 = never).
    #[arg(long, default_value_t = 100)]
    state_every: usize,
    /// Which tensors get a mask.
    #[arg(long, value_enum, default_value = "all")]
    filter: FilterArg,
    /// Mask only weight matrices and kernels (not biases or norms): `--filter weights-only`.
    #[arg(long, conflicts_with = "filter")]
    weights_only: bool,
    /// No-op, kept for old command lines: the checkpoint knows its panel orientation.
    #[arg(long, hide = true)]
    transpose_panels: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

/// One task set, or several pooled (the control mask on all shapes).
fn pooled(parts: &[AvrDataset]) -> AvrDataset {
    match parts.len() {
        1 => parts[0].clone(),
        _ => AvrDataset::concat("pooled", &parts.iter().collect::<Vec<_>>()),
    }
}

#[derive(clap::Args)]
struct AblateArgs {
    /// The checkpoint the mask was trained on.
    #[arg(long)]
    ckpt: PathBuf,
    /// The mask's task dataset folder(s), as given to `mask train --task`: its held-out split
    /// (validation, else test) is read.
    #[arg(long, value_delimiter = ',', required = true)]
    task: Vec<PathBuf>,
    /// The mask.
    #[arg(long)]
    mask: PathBuf,
    /// Held-out problems evaluated, evenly spread (0 = all).
    #[arg(long, default_value_t = AblationConfig::default().problems)]
    problems: usize,
    /// Random count-matched removals.
    #[arg(long, default_value_t = AblationConfig::default().draws)]
    draws: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the record (default: `<mask stem>.ablation.json` beside the mask).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn ablate_mask(args: AblateArgs) -> Result<()> {
    session::setup(args.seed);
    let mut ckpt = Checkpoint::load(&args.ckpt)?;
    ckpt.model = ckpt.model.to_device(session::default_device());
    let mask = Mask::load(&args.mask)?;
    let parts = args
        .task
        .iter()
        .map(AvrDataset::open)
        .collect::<Result<Vec<_>>>()?;
    let held_out = pooled(&parts).first_split(&[Split::Val, Split::Test]);
    let cfg = AblationConfig::default()
        .with_problems(args.problems)
        .with_draws(args.draws)
        .with_seed(args.seed);
    let record = ablate(&ckpt, &mask, &held_out, &cfg)?;
    let out = args.out.unwrap_or_else(|| Ablation::path_for(&args.mask));
    record.save(&out)?;
    if args.json {
        return print_json(&record);
    }
    // The library's table (every reading, its caption the excess loss) is the text output.
    let table = record.table()?;
    println!("{}", table.caption.as_deref().unwrap_or_default());
    println!("{}", table.df);
    println!(
        "whole tensors it keeps: {}",
        record.whole_tensors.join(", ")
    );
    if let Some(tensors) = &record.collapsing_tensors {
        println!(
            "tensors whose module weights, removed alone, tie every candidate: {}",
            if tensors.is_empty() {
                "none".to_string()
            } else {
                tensors.join(", ")
            }
        );
    }
    println!("written to {}", out.display());
    Ok(())
}

/// `--filter`: mirrors [`MaskFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FilterArg {
    // Every trainable tensor, biases and norm affines included (the study's choice).
    All,
    // Only weight matrices and kernels (tensors with ≥ 2 axes).
    WeightsOnly,
}

impl From<FilterArg> for MaskFilter {
    fn from(filter: FilterArg) -> Self {
        match filter {
            FilterArg::All => MaskFilter::All,
            FilterArg::WeightsOnly => MaskFilter::WeightsOnly,
        }
    }
}

/// `--shape`: mirrors [`Shape`], in our plural and the study's singular spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShapeArg {
    #[value(alias = "circle")]
    Circles,
    #[value(alias = "triangle")]
    Triangles,
    #[value(alias = "square")]
    Squares,
    #[value(alias = "pentagon")]
    Pentagons,
    #[value(alias = "hexagon")]
    Hexagons,
}

impl From<ShapeArg> for Shape {
    fn from(shape: ShapeArg) -> Self {
        match shape {
            ShapeArg::Circles => Shape::Circles,
            ShapeArg::Triangles => Shape::Triangles,
            ShapeArg::Squares => Shape::Squares,
            ShapeArg::Pentagons => Shape::Pentagons,
            ShapeArg::Hexagons => Shape::Hexagons,
        }
    }
}

fn train(args: TrainArgs) -> Result<()> {
    session::setup(args.seed);
    let mut ckpt = Checkpoint::load(&args.ckpt)?;
    ckpt.model = ckpt.model.to_device(session::default_device());
    let parts = args
        .task
        .iter()
        .map(AvrDataset::open)
        .collect::<Result<Vec<_>>>()?;
    let task_set = pooled(&parts);
    let fit = task_set.split(Split::Train);
    // The task's validation split scores the mask during training (and chooses α); its test
    // split is left for the report. The control is the originals' test split: disjoint from
    // the validation problems that chose the checkpoints. Sets with only train/test folders
    // (the study's) fall back to the split they have.
    let held_out = task_set.first_split(&[Split::Val, Split::Test]);
    let control = args
        .control
        .as_ref()
        .map(AvrDataset::open)
        .transpose()?
        .map(|c| c.first_split(&[Split::Test, Split::Val]));
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| match args.task.as_slice() {
            [one] => one
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "mask".into()),
            _ => "all-shapes".into(),
        });
    let filter = match args.weights_only {
        true => MaskFilter::WeightsOnly,
        false => args.filter.into(),
    };
    let cfg = MaskTrainConfig::default()
        .with_alpha(args.alpha)
        .with_steps(args.steps)
        .with_samples(args.samples)
        .with_batch_size(args.batch)
        .with_lr(args.lr)
        .with_logit_init(args.logit_init)
        .with_eval_every(args.eval_every)
        .with_seed(args.seed)
        .with_filter(filter)
        .with_convergence((!args.fixed_steps).then_some(Convergence {
            every: args.settle_every,
            window: args.settle_window,
            tolerance: args.settle_tolerance,
        }));
    let task = MaskTask {
        shape: args
            .shape
            .map(Shape::from)
            .or_else(|| Shape::find_in(&name)),
        name,
        fit: &fit,
        held_out: &held_out,
        control: control.as_ref(),
    };
    // A killed run continues from OUT's `.resume` state (logits, Adam moments, log).
    let resume = MaskResume::beside(&args.out, args.state_every)?;
    let run = train_mask_resumable(&ckpt, &task, &cfg, None, Some(&resume))?;
    run.save_as(&args.out)?;
    resume.remove();
    // What was written (with the logits' CRC-32), not a fresh copy.
    let sidecar: MaskSidecar = avr_modularity::checkpoint::read_sidecar(&args.out)?;
    if args.json {
        print_json(&sidecar)
    } else {
        print_json_pretty(&sidecar)
    }
}

#[derive(clap::Args)]
struct StatsArgs {
    masks: Vec<PathBuf>,
    #[command(flatten)]
    chance: ChanceArgs,
    #[arg(long)]
    json: bool,
}

/// The chance-level options shared by `stats` and `sharing`.
#[derive(clap::Args)]
struct ChanceArgs {
    /// Draws of the count-matched null (kept weights shuffled within each tensor, per mask);
    /// 0 skips it.
    #[arg(long = "null", default_value_t = 1000)]
    draws: usize,
    /// Seed of the null draws and of the binarisation samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// threshold (`l > 0`) or sample (σ(l) per weight; the mean over --samples draws).
    #[arg(long, value_enum, default_value = "threshold")]
    binarize: BinarizeArg,
    /// Samples averaged under `--binarize sample`.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Compare masks trained with different settings (α, steps, lr, …) — refused otherwise.
    #[arg(long)]
    allow_mixed_settings: bool,
}

impl ChanceArgs {
    fn config(&self) -> ChanceConfig {
        ChanceConfig::default()
            .with_draws(self.draws)
            .with_seed(self.seed)
            .with_binarize(self.binarize.into())
            .with_samples(self.samples)
            .with_mixed(self.mixed())
    }

    fn mixed(&self) -> MixedSettings {
        match self.allow_mixed_settings {
            true => MixedSettings::Allow,
            false => MixedSettings::Refuse,
        }
    }

    /// Whether anything beyond the deterministic reading was asked for.
    fn wanted(&self) -> bool {
        self.draws > 0 || self.binarize == BinarizeArg::Sample
    }
}

/// `--binarize`: mirrors [`Binarize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BinarizeArg {
    Threshold,
    Sample,
}

impl From<BinarizeArg> for Binarize {
    fn from(b: BinarizeArg) -> Self {
        match b {
            BinarizeArg::Threshold => Binarize::Threshold,
            BinarizeArg::Sample => Binarize::Sample,
        }
    }
}

/// One mask's statistics with its decisiveness and, when asked, its dispersity against chance.
#[derive(serde::Serialize)]
struct MaskReading {
    #[serde(flatten)]
    stats: MaskStats,
    decisiveness: Decisiveness,
    #[serde(skip_serializing_if = "Option::is_none")]
    dispersity_chance: Option<DispersityChance>,
}

fn stats(args: StatsArgs) -> Result<()> {
    let cfg = args.chance.config();
    for path in &args.masks {
        let mask = Mask::load(path)?;
        let chance = match args.chance.wanted() {
            true => dispersity_chance(std::slice::from_ref(&mask), &cfg)?.pop(),
            false => None,
        };
        let reading = MaskReading {
            stats: mask_stats(&mask),
            decisiveness: mask.decisiveness()?,
            dispersity_chance: chance,
        };
        if args.json {
            print_json(&reading)?;
        } else {
            print_reading(&reading);
        }
    }
    Ok(())
}

fn print_reading(r: &MaskReading) {
    let (s, d) = (&r.stats, &r.decisiveness);
    println!(
        "{:<24} kept {:>7}/{} ({:6.2} %)  sparsity {:6.2} %  dispersity {:.4}",
        s.name,
        s.kept,
        s.total,
        100.0 * s.kept_fraction,
        s.sparsity,
        s.dispersity
    );
    println!(
        "{:<24} |l| < 2: {:.2} % of logits; one sample changes {:.1} % of the kept set ({})",
        "",
        100.0 * d.undecided_fraction,
        100.0 * d.flips_per_kept,
        if d.converged {
            "converged"
        } else {
            "not converged"
        }
    );
    if let Some(c) = &r.dispersity_chance {
        let l = &c.dispersity;
        println!(
            "{:<24} dispersity {:.4} vs chance {:.4} ± {:.4}: z {:.2}, p {:.4} ({} draws)",
            "", l.observed, l.null_mean, l.null_sd, l.z, l.p, c.draws
        );
    }
}

#[derive(clap::Args)]
struct SharingArgs {
    masks: Vec<PathBuf>,
    /// iomin (the study's) or iou.
    #[arg(long, value_enum, ignore_case = true, default_value = "iomin")]
    metric: Metric,
    /// Remove from each mask the weights kept by every mask of its seed first (the study's
    /// preprocessing; `circles-s1` is seed 1, masks named without a seed form one set).
    #[arg(long)]
    preprocess: bool,
    #[command(flatten)]
    chance: ChanceArgs,
    #[arg(long)]
    json: bool,
    /// Also write the heatmap as SVG (with the chance level beneath each cell).
    #[arg(long)]
    svg: Option<PathBuf>,
}

/// `--metric`: mirrors [`Overlap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Metric {
    // |A ∧ B| / min(|A|, |B|), the study's sharing metric.
    #[value(name = "iomin")]
    IoMin,
    // |A ∧ B| / |A ∨ B|.
    #[value(name = "iou")]
    IoU,
}

impl From<Metric> for Overlap {
    fn from(metric: Metric) -> Self {
        match metric {
            Metric::IoMin => Overlap::IoMin,
            Metric::IoU => Overlap::IoU,
        }
    }
}

fn sharing(args: SharingArgs) -> Result<()> {
    let masks = args
        .masks
        .iter()
        .map(Mask::load)
        .collect::<Result<Vec<_>>>()?;
    if args.chance.wanted() {
        let cfg = args.chance.config();
        let m = sharing_chance(&masks, args.metric.into(), args.preprocess, &cfg)?;
        if let Some(svg) = &args.svg {
            sharing_chance_heatmap(&m, None)?.save_svg(svg)?;
        }
        return match args.json {
            true => print_json(&m),
            false => {
                print_chance(&m);
                Ok(())
            }
        };
    }
    let m = sharing_matrix_with(
        &masks,
        args.metric.into(),
        args.preprocess,
        args.chance.mixed(),
    )?;
    if let Some(svg) = &args.svg {
        sharing_heatmap(&m, None)?.save_svg(svg)?;
    }
    if args.json {
        print_json(&m)
    } else {
        println!("{}", m.table()?.df);
        Ok(())
    }
}

/// One line per pair: observed, chance, z, p; then how many pairs lie above chance.
fn print_chance(m: &SharingChance) {
    println!(
        "{:?} %{} — {}; chance from {} count-matched draws (seed {})",
        m.metric,
        if m.preprocessed { ", preprocessed" } else { "" },
        m.binarisation(),
        m.draws,
        m.seed
    );
    for i in 0..m.names.len() {
        for j in (i + 1)..m.names.len() {
            println!(
                "{:<22} {:<22} {:6.2} (sd {:4.2})  chance {:6.2} ± {:4.2}  z {:6.2}  p {:.4}",
                m.names[i],
                m.names[j],
                m.matrix[i][j],
                m.matrix_sd[i][j],
                m.null_mean[i][j],
                m.null_sd[i][j],
                m.z[i][j],
                m.p[i][j]
            );
        }
    }
    let (above, below) = m.above_below();
    println!("{above} pairs above chance, {below} at or below");
}

#[derive(clap::Args)]
struct ChooseAlphaArgs {
    /// One finished mask per α (same checkpoint, task and seed).
    #[arg(required = true)]
    masks: Vec<PathBuf>,
    /// Allowed drop of validation task accuracy from the smallest α's (fraction).
    #[arg(long, default_value_t = ALPHA_TOLERANCE)]
    tolerance: f64,
    /// Record the accuracies alone, not each validation problem's outcome (which needs every
    /// mask's checkpoint and task data at hand); the report's α test is then unpaired.
    #[arg(long)]
    unpaired: bool,
    /// Where the record goes (written atomically).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

fn choose_alpha(args: ChooseAlphaArgs) -> Result<()> {
    let outcomes = match args.unpaired {
        true => RecordOutcomes::AccuracyOnly,
        false => RecordOutcomes::PerProblem,
    };
    let record = alpha_record_from_masks(&args.masks, args.tolerance, outcomes)?;
    let text = serde_json::to_vec_pretty(&record).map_err(avr_modularity::Error::from)?;
    avr_modularity::checkpoint::write_atomic(&args.out, &text)?;
    if args.json {
        print_json(&record)
    } else {
        print_json_pretty(&record)
    }
}
