//! The notebook surface: [`Study`] (seed, device, run size and paths, read once from `AVR_*`
//! variables) and the one-call helpers a notebook cell uses.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `AVR_SMOKE` | tiny run (CI) when set and not `0` | full size |
//! | `AVR_DATA` | a dataset folder to train on | generated under `target/` (smoke) or `datasets/train_SCL` |
//! | `AVR_TASKS` | folder with `originals/` and one folder per shape | the study's fixture sets |
//! | `AVR_CKPT` | the checkpoint masks are trained on | the study's `SCL_pretrain_80.ckpt` |
//! | `AVR_OUT` | where `out_dir(name)` puts outputs | the crate folder |
//! | `AVR_MASKS` | a folder of trained masks to analyse | `out_dir(<the notebook's default>)` |

use std::path::{Path, PathBuf};

use tch::Device;

use crate::analysis::toumei::ToumeiConfig;
use crate::checkpoint::Checkpoint;
use crate::data::digits::Digits;
use crate::data::generate::{generate_dataset, GeneratorConfig};
use crate::data::{AvrDataset, Shape, Split};
use crate::display::Figure;
use crate::files::{crate_root, shown_path};
use crate::masking::engine::{AlphaSweep, MaskTrainConfig};
use crate::masking::set::{MaskSet, TaskSets};
use crate::masking::toy::ToyConfig;
use crate::model::SclModel;
use crate::session::{self, RunSize, Session};
use crate::train::trainer::Milestone;
use crate::train::{train, TrainConfig, TrainRun};
use crate::{Error, Result};

/// What a notebook needs to know about its run, read once.
#[derive(Debug, Clone)]
pub struct Study {
    /// The one seed: data, shuffling, init and mask sampling derive from it.
    pub seed: u64,
    /// Smoke (CI) or full size.
    pub size: RunSize,
    /// CUDA when available, else CPU.
    pub device: Device,
    /// The session's settings (threads, version).
    pub session: Session,
    /// Dataset folder for training SCL (`AVR_DATA`).
    pub data_dir: PathBuf,
    /// Whether `data_dir` was given (then it is never generated into).
    pub data_given: bool,
    /// Folder with `originals/` and one folder per shape (`AVR_TASKS`).
    pub tasks_dir: PathBuf,
    /// The checkpoint masks are trained on (`AVR_CKPT`).
    pub checkpoint: PathBuf,
    /// Root of `out_dir` (`AVR_OUT`).
    pub out_root: PathBuf,
    /// A folder of trained masks to analyse (`AVR_MASKS`), when given.
    pub masks: Option<PathBuf>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Study {
    /// Seeds everything, picks the device and reads the run size and paths.
    pub fn setup(seed: u64) -> Result<Study> {
        let session = session::setup(seed);
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let size = session.run_size;
        let fixtures = crate::fixtures::fixtures_dir();
        let data = env_path("AVR_DATA");
        let default_data =
            root.join(size.pick("target/notebook-train-data", "datasets/study/originals"));
        // Full size reads the study run's shape sets (generated on the fly from the seed); a
        // smoke run the study's 24-problem fixture sets.
        let tasks_dir = match (env_path("AVR_TASKS"), &fixtures, size) {
            (Some(dir), _, _) => dir,
            (None, _, RunSize::Full) => root.join("datasets/study"),
            (None, Some(f), RunSize::Smoke) => f.join("seed/datasets"),
            (None, None, RunSize::Smoke) => root.join("datasets/tasks"),
        };
        let checkpoint = match (env_path("AVR_CKPT"), &fixtures) {
            (Some(path), _) => path,
            (None, Some(f)) => f.join(crate::fixtures::STUDY_CHECKPOINT),
            (None, None) => root.join("model_ckpts/SCL_pretrain_80.ckpt"),
        };
        Ok(Study {
            seed,
            size,
            device: session::default_device(),
            data_given: data.is_some(),
            data_dir: data.unwrap_or(default_data),
            tasks_dir,
            checkpoint,
            out_root: env_path("AVR_OUT").unwrap_or(root),
            masks: env_path("AVR_MASKS"),
            session,
        })
    }

    /// `smoke` in a smoke run, else `full`.
    pub fn pick<T>(&self, smoke: T, full: T) -> T {
        self.size.pick(smoke, full)
    }

    /// The masks to analyse: `AVR_MASKS` when set, else `out_dir(default)`.
    pub fn masks_dir(&self, default: &str) -> PathBuf {
        self.masks.clone().unwrap_or_else(|| self.out_dir(default))
    }

    /// The study's masks to analyse: `AVR_MASKS` when set, else the shipped
    /// `binary_masks/study/` of this crate (every milestone, every task and seed).
    pub fn study_masks_dir(&self) -> PathBuf {
        self.masks
            .clone()
            .unwrap_or_else(|| crate_root().join("binary_masks/study"))
    }

    /// `path` as captions and committed outputs show it ([`shown_path`]): no machine's
    /// absolute path.
    pub fn shown(&self, path: &Path) -> String {
        shown_path(path)
    }

    /// `<out_root>/<name>` (e.g. `binary_masks/notebook`).
    pub fn out_dir(&self, name: &str) -> PathBuf {
        self.out_root.join(name)
    }

    /// The training dataset: `AVR_DATA` as given; else, smoke: two configurations × 40
    /// problems, generated once (existing files are kept); full: the study run's data
    /// (`datasets/study/originals`, all seven × 10,000, generated from the seed when read).
    pub fn training_data(&self) -> Result<AvrDataset> {
        match (self.data_given, self.size) {
            (true, _) => {}
            (false, RunSize::Smoke) => {
                let cfg = GeneratorConfig {
                    per_config: 40,
                    seed: self.seed,
                    configs: vec!["center_single".into(), "distribute_four".into()],
                    ..Default::default()
                };
                generate_dataset(&cfg, &self.data_dir, false)?;
            }
            (false, RunSize::Full) if !self.data_dir.join("generator.json").is_file() => {
                return Err(Error::bad_file(
                    &self.data_dir,
                    "the study's data is not there: `make study STAGE=data` writes it \
                     (seconds; the problems are generated from the seed when read), or set AVR_DATA",
                ));
            }
            (false, RunSize::Full) => {}
        }
        AvrDataset::open(&self.data_dir)
    }

    /// The shapes of this run: the three the fixtures hold (smoke), or all five.
    pub fn shapes(&self) -> Vec<Shape> {
        self.pick(
            vec![Shape::Squares, Shape::Pentagons, Shape::Triangles],
            Shape::ALL.to_vec(),
        )
    }

    /// The shape datasets and control of `tasks_dir`. Smoke runs fit and evaluate on every
    /// problem (the fixture sets hold 24); full runs hold validation + test out.
    pub fn tasks(&self) -> Result<TaskSets> {
        match self.size {
            RunSize::Smoke => TaskSets::open_unsplit(&self.tasks_dir, &self.shapes()),
            RunSize::Full => {
                if let Some(missing) = self
                    .shapes()
                    .iter()
                    .map(|s| s.dir_in(&self.tasks_dir))
                    .find(|d| !d.is_dir())
                {
                    return Err(Error::bad_file(
                        &missing,
                        "no such shape set: `make study STAGE=data` writes the study's (seconds; \
                         the problems are generated from the seed when read), or set AVR_TASKS",
                    ));
                }
                TaskSets::open(&self.tasks_dir, &self.shapes())
            }
        }
    }

    /// The checkpoint masks are trained on, on this study's device.
    pub fn load_checkpoint(&self) -> Result<Checkpoint> {
        let mut ckpt = Checkpoint::load(&self.checkpoint)?;
        ckpt.model = ckpt.model.to_device(self.device);
        Ok(ckpt)
    }

    /// SCL training settings for this run size ([`TrainConfig::for_size`]), seeded.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig::for_size(self.size).with_seed(self.seed)
    }

    /// Mask settings for this run size ([`MaskTrainConfig::for_size`]), seeded.
    pub fn mask_config(&self) -> MaskTrainConfig {
        MaskTrainConfig::for_size(self.size).with_seed(self.seed)
    }

    /// The masking method's toy tasks at this run size ([`ToyConfig::for_size`]); the seed is
    /// the preset's (the smoke preset's seed 3 is the one whose verdicts are documented).
    pub fn toy_config(&self) -> ToyConfig {
        ToyConfig::for_size(self.size)
    }

    /// `smoke()` in a smoke run, else `full()`: only the one asked for runs (a smoke run
    /// trains what a full run reads from the shipped artifacts).
    pub fn pick_with<T>(&self, smoke: impl FnOnce() -> T, full: impl FnOnce() -> T) -> T {
        match self.size {
            RunSize::Smoke => smoke(),
            RunSize::Full => full(),
        }
    }

    /// The study run shipped in `model_ckpts/study/` ([`ShippedRun`]), read, not retrained.
    pub fn study_run(&self) -> Result<ShippedRun> {
        ShippedRun::load(crate_root().join("model_ckpts/study"))
    }

    /// The study run as a [`TrainRun`], read from `model_ckpts/study/` rather than retrained:
    /// its log, its milestones, and its best milestone's model on this study's device.
    pub fn shipped_training(&self) -> Result<TrainRun> {
        let run = self.study_run()?;
        run.train_run(self.shipped_checkpoint()?.model)
    }

    /// The shipped run's best milestone (highest validation reading), on this study's device:
    /// the checkpoint the study's masks were trained on first.
    pub fn shipped_checkpoint(&self) -> Result<Checkpoint> {
        let run = self.study_run()?;
        let best = run.best_milestone_or_err()?;
        let mut ckpt = Checkpoint::load(run.dir.join(format!("{}.safetensors", best.name)))?;
        ckpt.model = ckpt.model.to_device(self.device);
        Ok(ckpt)
    }

    /// The study's α stage as shipped: the masks `binary_masks/study/alpha.json` lists, read
    /// back, with the study's rule (5 points) applied to them again.
    pub fn shipped_alpha_stage(&self) -> Result<AlphaSweep> {
        let record = crate_root().join("binary_masks/study/alpha.json");
        let text = std::fs::read_to_string(&record).map_err(|e| Error::io(&record, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&record, format!("not an α record: {e}")))?;
        let masks: Vec<PathBuf> = v["runs"]
            .as_array()
            .map(|runs| runs.iter().filter_map(|r| r["mask"].as_str()))
            .into_iter()
            .flatten()
            .map(|m| crate_root().join(m))
            .collect();
        AlphaSweep::from_masks(&masks, crate::masking::engine::ALPHA_TOLERANCE)
    }

    /// The study's shape masks of the best milestone with `seed`, shipped in
    /// `binary_masks/study/<milestone>/` (the pooled control left out: it is no shape).
    pub fn shipped_masks(&self, seed: u64) -> Result<MaskSet> {
        let run = self.study_run()?;
        let best = run.best_milestone_or_err()?;
        let mut set = MaskSet::load_dir(
            crate_root().join("binary_masks/study").join(&best.name),
            Some(seed),
        )?;
        set.runs.retain(|r| r.provenance.shape.is_some());
        Ok(set)
    }

    /// The settings the study's masks of the best milestone were trained with (their sidecars:
    /// the α stage's α, the step cap, the convergence rule), `seed` as given. An error when the
    /// masks disagree on any of them.
    pub fn shipped_mask_config(&self, seed: u64) -> Result<MaskTrainConfig> {
        let set = self.shipped_masks(seed)?;
        let Some(first) = set.runs.first() else {
            return Err(Error::NotEnough(format!(
                "no shipped masks with seed {seed} under binary_masks/study"
            )));
        };
        if let Some(other) = set.runs.iter().find(|r| r.config != first.config) {
            return Err(Error::Config(format!(
                "the shipped masks {} and {} were trained with different settings",
                first.mask.name, other.mask.name
            )));
        }
        Ok(first.config.clone())
    }

    /// The toumei graph-modularity experiments at this run size ([`ToumeiConfig::for_size`]).
    pub fn toumei_config(&self) -> ToumeiConfig {
        ToumeiConfig::for_size(self.size)
    }

    /// The seeds of a replicated experiment: 2 at smoke size (enough to run every test, too
    /// few to reach p ≤ 0.05), 8 at full size.
    pub fn seeds(&self) -> Vec<u64> {
        (0..self.pick(2, 8)).map(|i| self.seed + i).collect()
    }

    /// scikit-learn's real 8×8 handwritten digits ([`Digits::sklearn`]).
    pub fn digits(&self) -> Result<Digits> {
        Digits::sklearn()
    }

    /// Rows of the inline table.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        vec![
            ("seed", self.seed.to_string()),
            ("run size", format!("{:?}", self.size).to_lowercase()),
            ("device", self.session.device.clone()),
            ("threads", self.session.threads.to_string()),
            ("training data", shown_path(&self.data_dir)),
            ("shape tasks", shown_path(&self.tasks_dir)),
            ("checkpoint", shown_path(&self.checkpoint)),
            ("outputs", shown_path(&self.out_root)),
            ("version", self.session.crate_version.clone()),
        ]
    }

    /// Inline display in evcxr: a small two-column table.
    pub fn evcxr_display(&self) {
        crate::display::display_key_values(&self.summary());
    }
}

/// A finished or running training run read back from its folder (`metrics.csv` and the
/// milestone sidecars), e.g. the study run shipped in `model_ckpts/study/`: its curves and
/// milestones without retraining.
#[derive(Debug, Clone)]
pub struct ShippedRun {
    /// The run's folder.
    pub dir: PathBuf,
    /// One row per step.
    pub metrics: Vec<crate::train::trainer::MetricRow>,
    /// The milestone checkpoints in step order.
    pub milestones: Vec<ShippedMilestone>,
}

/// One milestone checkpoint of a [`ShippedRun`].
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedMilestone {
    /// File stem (`scl_official_val53.2`).
    pub name: String,
    /// Step it was saved at.
    pub step: usize,
    /// Validation accuracy that named it, and on how many problems.
    pub val: (f64, usize),
    /// The milestone level it was saved for: the highest of the run's levels (its sidecar's
    /// `train_config.milestones`) at or below `val`.
    pub level: Option<f64>,
    /// Test reading from the sidecar (`avr eval --split test --record`): accuracy, n, and the
    /// 95 % Wilson interval.
    pub test: Option<(f64, usize, f64, f64)>,
}

/// `n` with thousands separators (2,100).
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl ShippedRun {
    /// The milestone with the highest validation reading.
    pub fn best_milestone(&self) -> Option<&ShippedMilestone> {
        self.milestones
            .iter()
            .max_by(|a, b| a.val.0.total_cmp(&b.val.0))
    }

    /// [`ShippedRun::best_milestone`], or an error naming the run's folder when it has none.
    pub fn best_milestone_or_err(&self) -> Result<&ShippedMilestone> {
        self.best_milestone().ok_or_else(|| {
            Error::bad_file(&self.dir, "no milestone checkpoints (scl_*.json sidecars)")
        })
    }

    /// Reads `dir/metrics.csv` and every `dir/scl_*.json` sidecar.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let metrics = crate::train::trainer::read_metrics_csv(&dir.join("metrics.csv"))?;
        let mut milestones = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            if !name.starts_with("scl_") || path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            milestones.push(Self::milestone(&path, name)?);
        }
        milestones.sort_by_key(|m| m.step);
        Ok(ShippedRun {
            dir,
            metrics,
            milestones,
        })
    }

    fn milestone(path: &Path, name: String) -> Result<ShippedMilestone> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a checkpoint sidecar: {e}")))?;
        let number = |key: &str| {
            v[key]
                .as_f64()
                .ok_or_else(|| Error::bad_file(path, format!("no `{key}`")))
        };
        let test = v["evaluations"].as_array().and_then(|evals| {
            evals
                .iter()
                .rev()
                .find(|e| e["splits"] == serde_json::json!(["test"]))
                .and_then(|e| {
                    Some((
                        e["accuracy"].as_f64()?,
                        e["n"].as_u64()? as usize,
                        e["interval"][0].as_f64()?,
                        e["interval"][1].as_f64()?,
                    ))
                })
        });
        let val = number("measured_val_accuracy")?;
        let level = v["train_config"]["milestones"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_f64())
            .filter(|&l| l <= val)
            .max_by(f64::total_cmp);
        Ok(ShippedMilestone {
            name,
            step: number("step")? as usize,
            val: (val, number("val_problems")? as usize),
            level,
            test,
        })
    }

    /// This run as a [`TrainRun`] with `model` (e.g. its best milestone's): the log as read,
    /// and the milestones as the trainer recorded them in `last.json` (a reading that crossed
    /// two levels is two milestones of one file there); without `last.json`, one per sidecar,
    /// each of which must then name its level.
    pub fn train_run(&self, model: SclModel) -> Result<TrainRun> {
        let milestones = match self.recorded_milestones()? {
            Some(recorded) => recorded,
            None => self
                .milestones
                .iter()
                .map(|m| {
                    let path = self.dir.join(format!("{}.safetensors", m.name));
                    let level = m.level.ok_or_else(|| {
                        Error::bad_file(
                            path.with_extension("json"),
                            "no milestone levels in train_config",
                        )
                    })?;
                    Ok(Milestone {
                        level,
                        measured_val_accuracy: m.val.0,
                        step: m.step,
                        path: Some(path),
                    })
                })
                .collect::<Result<_>>()?,
        };
        Ok(TrainRun {
            model,
            metrics: self.metrics.clone(),
            milestones,
        })
    }

    /// The milestones in `last.json` (the trainer's resumable state), paths resolved against
    /// the crate's folder when they are relative; `None` when there is no `last.json`.
    fn recorded_milestones(&self) -> Result<Option<Vec<Milestone>>> {
        let last = self.dir.join("last.json");
        if !last.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&last).map_err(|e| Error::io(&last, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&last, format!("not a training state: {e}")))?;
        let mut milestones: Vec<Milestone> = serde_json::from_value(v["milestones"].clone())
            .map_err(|e| Error::bad_file(&last, format!("milestones: {e}")))?;
        for m in &mut milestones {
            if let Some(p) = m.path.as_mut().filter(|p| p.is_relative()) {
                *p = crate_root().join(&*p);
            }
        }
        Ok(Some(milestones))
    }

    /// Loss and training accuracy averaged over every `every` steps (one batch each is noisy),
    /// and the validation readings, against step.
    pub fn curves(&self, every: usize) -> Result<Figure> {
        let title = format!(
            "{}: {} steps",
            self.shown_dir(),
            grouped(self.metrics.len())
        );
        let validation = match self.milestones.first() {
            Some(m) => format!("validation ({} problems)", grouped(m.val.1)),
            None => "validation".to_string(),
        };
        crate::plot::training_curves(&title, &self.metrics, every, &validation)
    }

    /// The milestones: step, validation reading, test reading with its interval and n.
    pub fn milestone_table(&self) -> Result<crate::display::Table> {
        use polars::prelude::{Column, DataFrame};
        let m = &self.milestones;
        let test = |f: fn(&(f64, usize, f64, f64)) -> String| -> Vec<String> {
            m.iter()
                .map(|x| x.test.as_ref().map_or("not read".into(), f))
                .collect()
        };
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "checkpoint".into(),
                m.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "step".into(),
                m.iter().map(|x| x.step as i64).collect::<Vec<_>>(),
            ),
            Column::new(
                "validation %".into(),
                m.iter()
                    .map(|x| format!("{:.1} (n = {})", 100.0 * x.val.0, x.val.1))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "test % [95 % CI]".into(),
                test(|t| {
                    format!(
                        "{:.1} [{:.1}, {:.1}] (n = {})",
                        100.0 * t.0,
                        100.0 * t.2,
                        100.0 * t.3,
                        t.1
                    )
                }),
            ),
        ])?;
        Ok(crate::display::Table::new(df).with_caption(format!(
            "Milestone checkpoints of {} (test readings: the held-out test split)",
            self.shown_dir()
        )))
    }

    /// The folder relative to the repository when it lies inside it.
    fn shown_dir(&self) -> String {
        shown_path(&self.dir)
    }

    /// Inline display: the curves, averaged over 250 steps.
    pub fn evcxr_display(&self) {
        match self.curves(250) {
            Ok(f) => f.evcxr_display(),
            Err(e) => println!("{} (curves unavailable: {e})", self.dir.display()),
        }
    }
}

/// Trains `model` on the train split of `data`, validating on its validation split; milestone
/// checkpoints and the resumable state go to `out` when given.
pub fn train_scl(
    model: SclModel,
    data: &AvrDataset,
    cfg: &TrainConfig,
    out: Option<&Path>,
) -> Result<TrainRun> {
    let (fit, val) = (data.split(Split::Train), data.split(Split::Val));
    if fit.is_empty() || val.is_empty() {
        return Err(Error::bad_file(
            &data.root,
            "training needs problems in both the train and the val split",
        ));
    }
    train(model, &fit, &val, cfg, out)
}
