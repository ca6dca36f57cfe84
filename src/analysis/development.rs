//! Module development over training: masks grouped by the checkpoint they were trained on, put in
//! order of that checkpoint's *measured* validation accuracy (read from the sidecars — never
//! from a position in a list, the study's mislabelling bug), with a warning when masks being
//! compared were trained with different α.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::ablation::{ablate, Ablation, AblationConfig, Ablations};
use super::chance::{
    check_sharing_inputs, dispersity_chance, sharing_chance, ChanceConfig, SharingChance,
};
use super::masks::{mask_stats, sharing_matrix_with, Overlap, SharingMatrix};
use super::replicates::{
    holm_adjusted, means_by_task, p_text, replicate_test, task_of, Interval, ReplicateTest,
    Replicates,
};
use crate::checkpoint::{read_sidecar, Checkpoint, CheckpointSidecar, RecordedAccuracy};
use crate::data::{AvrDataset, Split};
use crate::display::Table;
use crate::masking::engine::{
    mask_readings_path, read_mask_readings_csv, MaskMetricRow, MaskSidecar,
};
use crate::masking::{check_comparable, Mask, MixedSettings};
use crate::train::eval::wilson_interval;
use crate::{Error, Result};

/// One trained mask with what its sidecar says about it.
#[derive(Debug, Clone)]
pub struct MaskRecord {
    /// The mask's `.safetensors` file (its sidecar is the same path with `.json`).
    pub path: PathBuf,
    /// The mask's logits, loaded from `path`.
    pub mask: Mask,
    /// The sidecar's training record: base checkpoint, its accuracy, α, final accuracies.
    pub sidecar: MaskSidecar,
    /// The base checkpoint's held-out test reading (`avr eval --split test --record`), when its
    /// sidecar has one: the development's x-axis, untouched by the selection of checkpoints.
    pub base_test: Option<RecordedAccuracy>,
}

impl MaskRecord {
    /// The readings logged while the mask trained (`<stem>.readings.csv` beside it).
    pub fn readings(&self) -> Result<Vec<MaskMetricRow>> {
        read_mask_readings_csv(&mask_readings_path(&self.path))
    }

    /// The base checkpoint's file: the sidecar's path as given, else resolved against the
    /// mask file's ancestor folders (sidecars store the path relative to where `avr` ran).
    pub fn base_checkpoint_path(&self) -> Option<PathBuf> {
        self.resolve(&self.sidecar.base_checkpoint)
            .filter(|p| p.is_file())
    }

    /// The task dataset's folder, resolved the same way (`None` for a pooled task).
    pub fn task_dataset_path(&self) -> Option<PathBuf> {
        self.resolve(&self.sidecar.task_dataset)
            .filter(|p| p.is_dir())
    }

    /// `given` as it stands when it exists, else the first of the mask's ancestor folders
    /// joined with it that exists.
    fn resolve(&self, given: &str) -> Option<PathBuf> {
        let given = PathBuf::from(given);
        if given.exists() {
            return Some(given);
        }
        self.path
            .ancestors()
            .skip(1)
            .map(|a| a.join(&given))
            .find(|p| p.exists())
    }

    /// The task-accuracy drop of the masked model from the unmasked one on the same problems
    /// (points), when the sidecar holds both readings.
    pub fn task_drop_points(&self) -> Option<f64> {
        let unmasked = self.sidecar.unmasked.as_ref()?.task.accuracy;
        Some(100.0 * (unmasked - self.sidecar.final_task_accuracy?))
    }

    /// The mask's ablation record (`avr mask ablate`'s, beside the mask), `None` when it was
    /// not measured; a record that exists but cannot be read is an error naming it.
    pub fn ablation(&self) -> Result<Option<Ablation>> {
        let path = Ablation::path_for(&self.path);
        match path.is_file() {
            true => Ablation::load(&path).map(Some),
            false => Ok(None),
        }
    }

    /// The task without its seed suffix (`squares-s1` → `squares`): replicates share it.
    pub fn task(&self) -> &str {
        task_of(&self.mask.name)
    }

    /// The checkpoint's accuracy on the x-axis: the test reading when recorded, else the
    /// validation reading that chose it.
    pub fn x_accuracy(&self) -> Option<f64> {
        self.base_test
            .as_ref()
            .map(|t| t.accuracy)
            .or(self.sidecar.base_accuracy)
    }

    /// The checkpoint: its folder and file stem (e.g. `demo/scl_official_val31.2`).
    pub fn checkpoint(&self) -> String {
        let path = Path::new(&self.sidecar.base_checkpoint);
        let name = |p: Option<&std::ffi::OsStr>| {
            p.map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        format!(
            "{}/{}",
            name(path.parent().and_then(|p| p.file_name())),
            name(path.file_stem())
        )
    }
}

/// A measure's change over training, decided by its interval.
#[derive(Debug, Clone)]
pub struct Change {
    /// Late minus early, paired over the tasks present at both checkpoints (each task the mean
    /// over its seeds).
    pub interval: Interval,
    /// Two-sided p of the paired t test behind `interval`.
    pub p: f64,
    /// The measure and the checkpoints compared (`module size from A (36.1 %) → B (80.2 %)`).
    pub what: String,
    /// The checkpoints compared alone (`A (36.1 %) → B (80.2 %)`).
    pub span: String,
    /// Whether the sentence calls the change significant (the interval excludes 0, or, in a
    /// family of steps, the Holm-adjusted p is ≤ 0.05).
    pub significant: bool,
    /// The finding in words, with the test named.
    pub sentence: String,
}

/// `early (36.1 %) → late (80.2 %)`.
fn span(early: &(String, Option<f64>), late: &(String, Option<f64>)) -> String {
    let pct = |a: Option<f64>| a.map_or("?".into(), |a| format!("{:.1} %", 100.0 * a));
    format!(
        "{} ({}) → {} ({})",
        early.0,
        pct(early.1),
        late.0,
        pct(late.1)
    )
}

/// A step's sentence decided by its Holm-adjusted p instead of its own interval.
fn holm_sentence(step: &Change, holm: f64, family: usize) -> String {
    let i = &step.interval;
    let test = format!(
        "unadjusted 95 % interval; paired t over {} tasks, each the mean over its seeds; p = \
         {}, Holm-adjusted over {family} steps p = {}",
        i.n,
        p_text(step.p),
        p_text(holm)
    );
    match (holm <= 0.05, i.mean > 0.0) {
        (true, true) => format!("{} rises: change {} ({test}).", step.what, i.summary(3)),
        (true, false) => format!("{} falls: change {} ({test}).", step.what, i.summary(3)),
        (false, _) => format!(
            "No significant change in {}: {} ({test}).",
            step.what,
            i.summary(3)
        ),
    }
}

impl MaskRecord {
    /// The base checkpoint's test reading, from its sidecar (none for the study's pickles,
    /// which have no sidecar, or when the checkpoint cannot be found). A sidecar that exists
    /// but cannot be read is an error: silently falling back would move the x-axis to the
    /// selection-biased validation reading.
    fn read_base_test(&self) -> Result<Option<RecordedAccuracy>> {
        let Some(path) = self.base_checkpoint_path() else {
            return Ok(None);
        };
        if !path.with_extension("json").exists() {
            return Ok(None);
        }
        let sidecar: CheckpointSidecar = read_sidecar(&path)?;
        Ok(sidecar
            .evaluations
            .into_iter()
            .rev()
            .find(|e| e.splits == ["test"]))
    }
}

/// All masks under a folder, with the checkpoint accuracies they belong to.
#[derive(Debug, Clone)]
pub struct Development {
    /// The masks, in order of measured checkpoint accuracy (unknown first), then task name.
    pub records: Vec<MaskRecord>,
    /// Whether masks of different settings were let in (then every comparison allows them).
    pub mixed: MixedSettings,
}

fn collect_safetensors(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            collect_safetensors(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            out.push(path);
        }
    }
    Ok(())
}

impl Development {
    /// Loads every `*.safetensors` mask (with its `.json` sidecar) under `dir`, in order of
    /// measured checkpoint accuracy, then task name. Masks trained with different settings
    /// (α, steps, lr, …) are refused: their development would measure the settings.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_dir_with(dir, MixedSettings::Refuse)
    }

    /// [`Self::from_dir`], saying whether masks of different settings may be compared (then
    /// [`Self::mixed_settings_warning`] says how they differ).
    pub fn from_dir_with(dir: impl AsRef<Path>, mixed: MixedSettings) -> Result<Self> {
        let mut paths = Vec::new();
        collect_safetensors(dir.as_ref(), &mut paths)?;
        let mut records = paths
            .into_iter()
            .map(|path| {
                let sidecar: MaskSidecar = read_sidecar(&path)?;
                let mask = Mask::load(&path)?;
                let mut record = MaskRecord {
                    path,
                    mask,
                    sidecar,
                    base_test: None,
                };
                record.base_test = record.read_base_test()?;
                Ok(record)
            })
            .collect::<Result<Vec<_>>>()?;
        if records.is_empty() {
            return Err(Error::bad_file(
                dir.as_ref(),
                "no mask files (*.safetensors with .json sidecars)",
            ));
        }
        let masks: Vec<Mask> = records.iter().map(|r| r.mask.clone()).collect();
        check_comparable(&masks, mixed)?;
        // By the x-axis reading; ties (equal test readings) by the validation reading, then
        // the checkpoint, so that one checkpoint's masks stay together.
        let by =
            |x: Option<f64>, y: Option<f64>| x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
        records.sort_by(|a, b| {
            by(a.x_accuracy(), b.x_accuracy())
                .then(by(a.sidecar.base_accuracy, b.sidecar.base_accuracy))
                .then(a.checkpoint().cmp(&b.checkpoint()))
                .then(a.mask.name.cmp(&b.mask.name))
        });
        Ok(Development { records, mixed })
    }

    /// The masks trained on `checkpoint`.
    pub fn masks_at(&self, checkpoint: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r.checkpoint() == checkpoint)
            .count()
    }

    /// Checkpoints in order of accuracy (the x-axis reading): `(name, accuracy)`.
    pub fn checkpoints(&self) -> Vec<(String, Option<f64>)> {
        let mut out: Vec<(String, Option<f64>)> = Vec::new();
        for r in &self.records {
            if !out.iter().any(|(c, _)| *c == r.checkpoint()) {
                out.push((r.checkpoint(), r.x_accuracy()));
            }
        }
        out
    }

    /// Whether every checkpoint has a held-out test reading (else the x-axis falls back to the
    /// validation readings that chose the checkpoints, which favour them).
    pub fn x_is_test(&self) -> bool {
        self.records.iter().all(|r| r.base_test.is_some())
    }

    /// The x-axis label, saying which reading it is.
    pub fn x_label(&self) -> &'static str {
        match self.x_is_test() {
            true => "checkpoint test accuracy (held out, %)",
            false => "checkpoint validation accuracy (the reading that chose it, %)",
        }
    }

    /// The tasks, replicates merged, in order of first appearance.
    pub fn tasks(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.records {
            if !out.iter().any(|t| t == r.task()) {
                out.push(r.task().to_string());
            }
        }
        out
    }

    /// The records of one checkpoint and task (one per seed).
    pub fn replicates(&self, checkpoint: &str, task: &str) -> Vec<&MaskRecord> {
        self.records
            .iter()
            .filter(|r| r.checkpoint() == checkpoint && r.task() == task)
            .collect()
    }

    /// The masks of every task with at least two seeds at `checkpoint`.
    pub fn replicate_groups(&self, checkpoint: &str) -> Vec<Replicates> {
        self.tasks()
            .into_iter()
            .map(|task| Replicates {
                masks: self
                    .replicates(checkpoint, &task)
                    .iter()
                    .map(|r| r.mask.clone())
                    .collect(),
                task,
            })
            .filter(|g| g.masks.len() >= 2)
            .collect()
    }

    /// For every pair of tasks with ≥ 2 seeds at `checkpoint`: between-task against replicate
    /// overlap (raw `metric`), decided by the permutation test ([`replicate_test`]).
    pub fn replicate_tests(
        &self,
        checkpoint: &str,
        metric: Overlap,
        seed: u64,
    ) -> Result<Vec<ReplicateTest>> {
        let groups = self.replicate_groups(checkpoint);
        let mut out = Vec::new();
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                out.push(replicate_test(a, b, metric, false, seed, self.mixed)?);
            }
        }
        Ok(out)
    }

    /// `measure` of every (checkpoint, task): the mean over seeds with its 95 % t interval.
    pub fn over_seeds(
        &self,
        measure: &dyn Fn(&MaskRecord) -> f64,
    ) -> Vec<(String, String, Interval)> {
        let mut out = Vec::new();
        for (ckpt, _) in self.checkpoints() {
            for task in self.tasks() {
                let values: Vec<f64> = self
                    .replicates(&ckpt, &task)
                    .into_iter()
                    .map(measure)
                    .collect();
                if !values.is_empty() {
                    out.push((ckpt.clone(), task, Interval::t95(&values)));
                }
            }
        }
        out
    }

    /// The checkpoints with a known accuracy, least accurate first.
    fn measured_checkpoints(&self) -> Vec<(String, Option<f64>)> {
        self.checkpoints()
            .into_iter()
            .filter(|c| c.1.is_some())
            .collect()
    }

    /// The change of `measure` from the least to the most accurate checkpoint
    /// ([`change_between`](Self::change_between)).
    pub fn change(&self, what: &str, measure: &dyn Fn(&MaskRecord) -> f64) -> Option<Change> {
        let checkpoints = self.measured_checkpoints();
        self.change_between(what, measure, checkpoints.first()?, checkpoints.last()?)
    }

    /// The change of `measure` from checkpoint `early` to `late`, paired over the tasks present
    /// at both: each task's mean over its seeds at `late` minus the same at `early`, with the
    /// 95 % t interval over tasks and a sentence that says "no significant change" unless the
    /// interval excludes zero. Seeds of one task share its data and its unmasked model, and a
    /// seed number means nothing across checkpoints, so the unit is the task, not the mask.
    pub fn change_between(
        &self,
        what: &str,
        measure: &dyn Fn(&MaskRecord) -> f64,
        early: &(String, Option<f64>),
        late: &(String, Option<f64>),
    ) -> Option<Change> {
        if early.0 == late.0 {
            return None;
        }
        let before = self.per_task_means(&early.0, measure);
        let diffs: Vec<f64> = self
            .per_task_means(&late.0, measure)
            .into_iter()
            .filter_map(|(task, after)| {
                let (_, was) = before.iter().find(|(t, _)| *t == task)?;
                Some(after - was)
            })
            .collect();
        if diffs.is_empty() {
            return None;
        }
        let interval = Interval::t95(&diffs);
        let test = format!(
            "95 % paired t interval over {} tasks, each the mean over its seeds",
            interval.n
        );
        let span = span(early, late);
        let what = format!("{what} from {span}");
        Some(Change {
            interval,
            p: interval.t_test_p(),
            sentence: interval.change_sentence(&what, &test),
            significant: interval.excludes(0.0),
            what,
            span,
        })
    }

    /// The change of `measure` between each pair of neighbouring checkpoints
    /// ([`change_between`](Self::change_between)), decided as one family: each step is
    /// significant when its Holm-adjusted p is ≤ 0.05, and its sentence says so.
    pub fn consecutive_changes(
        &self,
        what: &str,
        measure: &dyn Fn(&MaskRecord) -> f64,
    ) -> Vec<Change> {
        let checkpoints = self.measured_checkpoints();
        let steps: Vec<Change> = checkpoints
            .windows(2)
            .filter_map(|pair| self.change_between(what, measure, &pair[0], &pair[1]))
            .collect();
        let adjusted = holm_adjusted(&steps.iter().map(|c| c.p).collect::<Vec<_>>());
        let family = adjusted.len();
        steps
            .into_iter()
            .zip(adjusted)
            .map(|(step, holm)| Change {
                sentence: holm_sentence(&step, holm, family),
                significant: holm <= 0.05,
                ..step
            })
            .collect()
    }

    /// Per checkpoint: each mask's dispersity minus its count-matched chance level (the mean
    /// dispersity of random masks that keep as many weights), averaged over each task's seeds,
    /// as a mean with its 95 % t interval over the tasks (seeds of one task are not independent
    /// replicates of the model). Masks whose null could not be drawn are left out. Below zero:
    /// a module is more concentrated in few tensors than its size alone makes it.
    pub fn dispersity_against_chance(&self, chance: &ChanceConfig) -> Vec<(String, Interval)> {
        self.checkpoints()
            .into_iter()
            .map(|(ckpt, _)| {
                let per_task: Vec<f64> = self
                    .per_task_means(&ckpt, |r| {
                        mask_stats(&r.mask).dispersity - dispersity_null_mean(r, chance)
                    })
                    .into_iter()
                    .map(|(_, excess)| excess)
                    .collect();
                (ckpt, Interval::t95(&per_task))
            })
            .collect()
    }

    /// `measure` of each mask at `ckpt`, averaged over each task's seeds ([`means_by_task`]).
    pub fn per_task_means(
        &self,
        ckpt: &str,
        measure: impl Fn(&MaskRecord) -> f64,
    ) -> Vec<(String, f64)> {
        means_by_task(
            self.records
                .iter()
                .filter(|r| r.checkpoint() == ckpt)
                .map(|r| (r.task(), measure(r))),
        )
    }

    /// Every mask but those of `task` (e.g. the pooled control, `all-shapes`).
    pub fn without_task(&self, task: &str) -> Development {
        Development {
            records: self
                .records
                .iter()
                .filter(|r| r.task() != task)
                .cloned()
                .collect(),
            mixed: self.mixed,
        }
    }

    /// The shape modules only: every mask trained for one shape, without the pooled control
    /// (or any other task without a shape). The study's questions are about shape modules.
    pub fn shape_modules(&self) -> Development {
        Development {
            records: self
                .records
                .iter()
                .filter(|r| r.sidecar.shape.is_some())
                .cloned()
                .collect(),
            mixed: self.mixed,
        }
    }

    /// The study's development questions (R3, R6), each a [`change`](Self::change) from the
    /// least to the most accurate checkpoint: module size (kept %), dispersity, and dispersity
    /// above its count-matched chance level (`chance`). The last separates a change in how
    /// spread a module is from the change that its size alone brings: a larger mask placed at
    /// random is more dispersed too.
    pub fn changes(&self, chance: &ChanceConfig) -> Vec<Change> {
        let kept = |r: &MaskRecord| 100.0 * mask_stats(&r.mask).kept_fraction;
        let dispersity = |r: &MaskRecord| mask_stats(&r.mask).dispersity;
        let above_chance = |r: &MaskRecord| dispersity(r) - dispersity_null_mean(r, chance);
        [
            self.change("module size (kept %, change in points)", &kept),
            self.change("dispersity", &dispersity),
            self.change("dispersity minus its chance level", &above_chance),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// [`changes`](Self::changes)' module size and dispersity above chance between each pair of
    /// neighbouring checkpoints ([`consecutive_changes`](Self::consecutive_changes)): where
    /// along training a change happens, which a first-to-last test cannot say.
    pub fn consecutive_development(&self, chance: &ChanceConfig) -> Vec<Change> {
        let kept = |r: &MaskRecord| 100.0 * mask_stats(&r.mask).kept_fraction;
        let above_chance =
            |r: &MaskRecord| mask_stats(&r.mask).dispersity - dispersity_null_mean(r, chance);
        let mut steps = self.consecutive_changes("module size (kept %, change in points)", &kept);
        steps.extend(self.consecutive_changes("dispersity minus its chance level", &above_chance));
        steps
    }

    /// Module size with every mask read at the same step: the [`change`](Self::change) of the
    /// kept % from the least to the most accurate checkpoint, each mask's kept fraction taken
    /// from its readings at the last step that every mask reached. The stopping rule stops masks
    /// at different steps (a mask on a better checkpoint shrinks for longer), so this separates
    /// a change in the module from a change in when its training stopped. `None` when there is
    /// no change to read; an unreadable readings file is an error naming it.
    pub fn size_change_at_common_step(&self) -> Result<Option<(usize, Change)>> {
        let kept_steps: Vec<Vec<(usize, f64)>> = self
            .records
            .iter()
            .map(|r| Ok(kept_by_step(&r.readings()?)))
            .collect::<Result<_>>()?;
        let common = kept_steps
            .iter()
            .map(|steps| steps.last().map_or(0, |&(step, _)| step))
            .min()
            .unwrap_or(0);
        if common == 0 {
            return Ok(None);
        }
        let at_common: Vec<(PathBuf, f64)> = self
            .records
            .iter()
            .zip(&kept_steps)
            .filter_map(|(r, steps)| {
                let kept = steps.iter().rev().find(|&&(step, _)| step <= common)?.1;
                Some((r.path.clone(), 100.0 * kept))
            })
            .collect();
        let measure = |r: &MaskRecord| {
            at_common
                .iter()
                .find(|(path, _)| *path == r.path)
                .map_or(f64::NAN, |&(_, kept)| kept)
        };
        let what = format!("module size at step {common} (kept %, change in points)");
        Ok(self.change(&what, &measure).map(|c| (common, c)))
    }

    /// How far each mask's kept fraction moved (points, last reading minus the reading
    /// `window` steps before it) at the end of its training: how settled the stopping rule
    /// left it, with each mask's task. Masks with a shorter log are left out.
    pub fn kept_change_at_stop(&self, window: usize) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for r in &self.records {
            let steps = kept_by_step(&r.readings()?);
            let Some(&(last, kept)) = steps.last() else {
                continue;
            };
            let before = steps.iter().rev().find(|&&(s, _)| s + window <= last);
            if let Some(&(_, earlier)) = before {
                out.push((r.task().to_string(), 100.0 * (kept - earlier)));
            }
        }
        Ok(out)
    }

    /// A warning when the masks were not all trained with the same settings (possible only
    /// when loaded with [`MixedSettings::Allow`]).
    pub fn mixed_settings_warning(&self) -> Option<String> {
        let masks: Vec<Mask> = self.records.iter().map(|r| r.mask.clone()).collect();
        check_comparable(&masks, MixedSettings::Refuse)
            .err()
            .map(|e| e.to_string())
    }

    /// One row per mask: checkpoint, its accuracy readings, task, seed, how it stopped, α, kept %,
    /// dispersity, the deterministic-mask accuracies from training and the task accuracy's drop
    /// from the unmasked model on the same problems (points).
    pub fn table(&self) -> Result<Table> {
        let stats: Vec<_> = self.records.iter().map(|r| mask_stats(&r.mask)).collect();
        let ablations = self
            .records
            .iter()
            .map(|r| {
                let path = Ablation::path_for(&r.path);
                path.is_file().then(|| Ablation::load(&path)).transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let pct = |v: Option<f64>| v.map(|x| 100.0 * x);
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "checkpoint".into(),
                self.records
                    .iter()
                    .map(|r| r.checkpoint())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "checkpoint_val_acc_%".into(),
                self.records
                    .iter()
                    .map(|r| pct(r.sidecar.base_accuracy))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "checkpoint_test_acc".into(),
                self.records
                    .iter()
                    .map(|r| {
                        r.base_test
                            .as_ref()
                            .map_or("not recorded".into(), |t| t.summary())
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "mask".into(),
                self.records
                    .iter()
                    .map(|r| r.mask.name.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "seed".into(),
                self.records
                    .iter()
                    .map(|r| r.sidecar.config.seed)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "stopped".into(),
                self.records
                    .iter()
                    .map(|r| match r.sidecar.converged_at {
                        Some(step) => format!("settled at step {step}"),
                        None => format!("cap ({} steps)", r.sidecar.steps_done),
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "alpha".into(),
                self.records
                    .iter()
                    .map(|r| format!("{:e}", r.sidecar.config.alpha))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "kept_%".into(),
                stats
                    .iter()
                    .map(|s| 100.0 * s.kept_fraction)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "dispersity".into(),
                stats.iter().map(|s| s.dispersity).collect::<Vec<_>>(),
            ),
            Column::new(
                "unmasked_task_acc_%".into(),
                self.records
                    .iter()
                    .map(|r| r.sidecar.unmasked.as_ref().map(|u| 100.0 * u.task.accuracy))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "task_acc_% [95 % CI]".into(),
                self.records
                    .iter()
                    .map(|r| {
                        let n = r.sidecar.task_problems;
                        r.sidecar.final_task_accuracy.map(|a| {
                            let (low, high) = wilson_interval((a * n as f64).round() as usize, n);
                            format!("{:.1} [{:.1}, {:.1}]", 100.0 * a, 100.0 * low, 100.0 * high)
                        })
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "task_drop_pts".into(),
                self.records
                    .iter()
                    .map(|r| {
                        let unmasked = r.sidecar.unmasked.as_ref().map(|u| u.task.accuracy);
                        r.sidecar
                            .final_task_accuracy
                            .zip(unmasked)
                            .map(|(masked, base)| 100.0 * (base - masked))
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "control_acc_%".into(),
                self.records
                    .iter()
                    .map(|r| pct(r.sidecar.final_control_accuracy))
                    .collect::<Vec<_>>(),
            ),
            // The module removed and as many random weights removed, ties broken at random
            // (the ablation record); the training log's inverted reading is argmax's, which
            // turns "every candidate tied" into "answer 0".
            Column::new(
                "removed_acc_%".into(),
                ablations
                    .iter()
                    .map(|a| {
                        a.as_ref()
                            .map(|a| 100.0 * a.module_removed.expected_accuracy)
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "random_removal_acc_%".into(),
                ablations
                    .iter()
                    .map(|a| a.as_ref().map(|a| 100.0 * a.random_removed_accuracy()))
                    .collect::<Vec<_>>(),
            ),
        ])?;
        Ok(Table::new(df).with_caption(format!(
            "masks by measured checkpoint accuracy; accuracies on each mask's held-out problems \
             (n = {} task, {} control); checkpoint_val_acc_% on the validation problems that \
             chose it; removed / random removal: ties broken at random (random removal: the \
             mean of its draws), empty where `avr mask ablate` has not run",
            self.distinct_counts(|r| r.sidecar.task_problems),
            self.distinct_counts(|r| r.sidecar.control_problems),
        )))
    }

    /// The distinct values of a per-mask count: `200`, or `8, 200`.
    fn distinct_counts(&self, count: impl Fn(&MaskRecord) -> usize) -> String {
        let mut values: Vec<usize> = self.records.iter().map(count).collect();
        values.sort_unstable();
        values.dedup();
        let text: Vec<String> = values.iter().map(usize::to_string).collect();
        text.join(", ")
    }

    /// One row per checkpoint and task: the checkpoint's accuracy reading (test when recorded,
    /// with n and interval), the seeds, module size and dispersity as mean [95 % t interval]
    /// over seeds, and dispersity's count-matched chance level (mean over seeds).
    pub fn module_table(&self, chance: &ChanceConfig) -> Result<Table> {
        let kept = self.over_seeds(&|r| 100.0 * mask_stats(&r.mask).kept_fraction);
        let spread = self.over_seeds(&|r| mask_stats(&r.mask).dispersity);
        let null = self.over_seeds(&|r| dispersity_null_mean(r, chance));
        let reading = |ckpt: &str| -> String {
            let r = self.records.iter().find(|r| r.checkpoint() == ckpt);
            match r.and_then(|r| r.base_test.as_ref()) {
                Some(t) => format!("test {}", t.summary()),
                None => r
                    .and_then(|r| r.sidecar.base_accuracy)
                    .map_or("unknown".into(), |a| {
                        format!("val {:.1} % (selection)", 100.0 * a)
                    }),
            }
        };
        let col = |name: &str, v: Vec<String>| Column::new(name.into(), v);
        let df = DataFrame::new_infer_height(vec![
            col("checkpoint", kept.iter().map(|k| k.0.clone()).collect()),
            col("accuracy", kept.iter().map(|k| reading(&k.0)).collect()),
            col("task", kept.iter().map(|k| k.1.clone()).collect()),
            col(
                "kept_% [95 % CI]",
                kept.iter().map(|k| k.2.summary(2)).collect(),
            ),
            col(
                "dispersity [95 % CI]",
                spread.iter().map(|k| k.2.summary(4)).collect(),
            ),
            col(
                "dispersity at chance",
                null.iter().map(|k| format!("{:.4}", k.2.mean)).collect(),
            ),
            col(
                "dispersity − chance, each seed",
                kept.iter()
                    .map(|(ckpt, task, _)| {
                        let seeds: Vec<String> = self
                            .replicates(ckpt, task)
                            .into_iter()
                            .map(|r| {
                                let excess = mask_stats(&r.mask).dispersity
                                    - dispersity_null_mean(r, chance);
                                format!("{excess:+.4}")
                            })
                            .collect();
                        seeds.join(", ")
                    })
                    .collect(),
            ),
        ])?;
        Ok(Table::new(df).with_caption(format!(
            "modules over seeds: 95 % t intervals over a task's seeds (with 2 seeds, t = 12.7 \
             makes them wide; the last column gives each seed's own excess over its chance \
             level, and R1's test pools the tasks); {} null draws per mask for chance",
            chance.draws
        )))
    }

    /// The ablation records (`avr mask ablate`) of the masks trained on `checkpoint`, those
    /// measured so far: each `<mask>.ablation.json` beside its mask.
    pub fn ablations(&self, checkpoint: &str) -> Result<Ablations> {
        Ok(self.ablations_in(checkpoint, &self.ablation_records()?))
    }

    /// Every mask's ablation record measured so far, by the mask's path: read once, for
    /// callers that need them more than one way (R4's tests and its figure).
    pub fn ablation_records(&self) -> Result<HashMap<PathBuf, Ablation>> {
        let mut out = HashMap::new();
        for r in &self.records {
            if let Some(a) = r.ablation()? {
                out.insert(r.path.clone(), a);
            }
        }
        Ok(out)
    }

    /// The records of `read` ([`Development::ablation_records`]) of the masks trained on
    /// `checkpoint`, in the masks' order.
    pub fn ablations_in(&self, checkpoint: &str, read: &HashMap<PathBuf, Ablation>) -> Ablations {
        let records = self
            .records
            .iter()
            .filter(|r| r.checkpoint() == checkpoint)
            .filter_map(|r| read.get(&r.path).cloned())
            .collect();
        Ablations { records }
    }

    /// Measures the ablation of every shape mask that has no record yet, or one written before
    /// the layer-matched removals and the collapse probe existed (on the checkpoint and task set its sidecar names, the
    /// task's validation split, else its test split), and writes each record beside its mask;
    /// returns how many were measured.
    pub fn ablate_missing(&self, cfg: &AblationConfig) -> Result<usize> {
        let current = |r: &MaskRecord| -> Result<bool> {
            let path = Ablation::path_for(&r.path);
            Ok(path.is_file() && Ablation::load(&path)?.is_current(cfg))
        };
        let mut missing: Vec<&MaskRecord> = Vec::new();
        for r in self.records.iter().filter(|r| r.sidecar.shape.is_some()) {
            if !current(r)? {
                missing.push(r);
            }
        }
        for r in &missing {
            let unresolved = |what: &str, given: &str| {
                Error::bad_file(&r.path, format!("its {what} `{given}` is not found"))
            };
            let ckpt = r
                .base_checkpoint_path()
                .ok_or_else(|| unresolved("checkpoint", &r.sidecar.base_checkpoint))?;
            let task = r
                .task_dataset_path()
                .ok_or_else(|| unresolved("task dataset", &r.sidecar.task_dataset))?;
            let ckpt = Checkpoint::load(&ckpt)?;
            let task = AvrDataset::open(&task)?;
            let held_out = task.first_split(&[Split::Val, Split::Test]);
            ablate(&ckpt, &r.mask, &held_out, cfg)?.save(&Ablation::path_for(&r.path))?;
        }
        Ok(missing.len())
    }

    /// One row per checkpoint: removing each module against removing as many random weights
    /// (accuracies with ties broken at random), the paired excess loss with its 95 % interval
    /// over the measured shapes (each the mean over its seeds), and the finding.
    pub fn ablation_table(&self) -> Result<Table> {
        let rows = self
            .checkpoints()
            .into_iter()
            .map(|(c, _)| Ok((c.clone(), self.masks_at(&c), self.ablations(&c)?)))
            .collect::<Result<Vec<_>>>()?;
        // Mean over the measured masks (percent), "—" where none is measured.
        let mean = |a: &Ablations, f: &dyn Fn(&Ablation) -> f64| -> String {
            match a.records.len() {
                0 => "—".into(),
                n => format!(
                    "{:.1}",
                    100.0 * a.records.iter().map(f).sum::<f64>() / n as f64
                ),
            }
        };
        let measured = |a: &Ablations, text: String| match a.records.is_empty() {
            true => "—".into(),
            false => text,
        };
        let col = |name: &str, f: &dyn Fn(&Ablations) -> String| {
            Column::new(
                name.into(),
                rows.iter().map(|r| f(&r.2)).collect::<Vec<_>>(),
            )
        };
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "checkpoint".into(),
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "measured".into(),
                rows.iter()
                    .map(|r| format!("{} of {}", r.2.records.len(), r.1))
                    .collect::<Vec<_>>(),
            ),
            col("module_removed_%", &|a| {
                mean(a, &|x| x.module_removed.expected_accuracy)
            }),
            col("all_tied_when_removed_%", &|a| {
                mean(a, &|x| {
                    x.module_removed.all_tied as f64 / x.module_removed.n.max(1) as f64
                })
            }),
            col("random_removal_%", &|a| {
                mean(a, &Ablation::random_removed_accuracy)
            }),
            col("excess_loss_points [95 % CI]", &|a| {
                measured(a, a.excess_loss().summary(1))
            }),
            col("finding", &|a| measured(a, a.finding())),
            col("layer_matched_excess_points [95 % CI]", &|a| {
                measured(a, a.layer_matched_excess().summary(1))
            }),
            col("layer_matched_finding", &|a| {
                measured(a, a.layer_matched_finding())
            }),
        ])?;
        Ok(Table::new(df).with_caption(
            "removing a module against removing as many weights anywhere at random, and as \
             many per tensor at random places (ties broken at random; chance 12.5 %); \
             accuracies are means over the measured masks, intervals over shapes (each the \
             mean over its seeds)",
        ))
    }

    /// The sharing matrix of the masks trained on `checkpoint`, and its accuracy.
    pub fn sharing(
        &self,
        checkpoint: &str,
        metric: Overlap,
        preprocess: bool,
    ) -> Result<(SharingMatrix, Option<f64>)> {
        let masks: Vec<Mask> = self
            .records
            .iter()
            .filter(|r| r.checkpoint() == checkpoint)
            .map(|r| r.mask.clone())
            .collect();
        let acc = self
            .records
            .iter()
            .find(|r| r.checkpoint() == checkpoint)
            .and_then(|r| r.sidecar.base_accuracy);
        Ok((
            sharing_matrix_with(&masks, metric, preprocess, self.mixed)?,
            acc,
        ))
    }

    /// IoMin of the masks at `checkpoint` against its chance level after the study's
    /// preprocessing, per seed, when every seed has three masks; all raw when any seed has
    /// fewer. The result's `preprocessed` says which.
    pub fn study_sharing(
        &self,
        checkpoint: &str,
        cfg: &ChanceConfig,
    ) -> Result<(SharingChance, Option<f64>)> {
        let preprocess = self.preprocessable(checkpoint).is_ok();
        self.sharing_chance(checkpoint, Overlap::IoMin, preprocess, cfg)
    }

    /// Whether the masks at `checkpoint` can take the study's preprocessing: at least three
    /// masks of each seed ([`check_sharing_inputs`]); the error names the seed that falls short.
    pub fn preprocessable(&self, checkpoint: &str) -> Result<()> {
        let names: Vec<String> = self
            .records
            .iter()
            .filter(|r| r.checkpoint() == checkpoint)
            .map(|r| r.mask.name.clone())
            .collect();
        check_sharing_inputs(&names, true)
    }

    /// The sharing matrix of the masks trained on `checkpoint` against its count-matched chance
    /// level, and the checkpoint's accuracy (the x-axis reading).
    pub fn sharing_chance(
        &self,
        checkpoint: &str,
        metric: Overlap,
        preprocess: bool,
        cfg: &ChanceConfig,
    ) -> Result<(SharingChance, Option<f64>)> {
        let records: Vec<&MaskRecord> = self
            .records
            .iter()
            .filter(|r| r.checkpoint() == checkpoint)
            .collect();
        let masks: Vec<Mask> = records.iter().map(|r| r.mask.clone()).collect();
        let cfg = cfg.with_mixed(self.mixed);
        let acc = records.first().and_then(|r| r.x_accuracy());
        Ok((sharing_chance(&masks, metric, preprocess, &cfg)?, acc))
    }

    /// Inline display in evcxr (`text/html`): the [`table`](Self::table) of masks.
    pub fn evcxr_display(&self) {
        match self.table().and_then(|t| t.to_html()) {
            Ok(html) => println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT"),
            Err(e) => println!("{e}"),
        }
    }
}

/// `(step, kept fraction)` of every reading that has one, in step order.
fn kept_by_step(readings: &[MaskMetricRow]) -> Vec<(usize, f64)> {
    readings
        .iter()
        .filter_map(|r| Some((r.step, r.kept_fraction?)))
        .collect()
}

/// The count-matched chance level of `record`'s dispersity: the mean dispersity of random masks
/// that keep as many weights. NaN when the null cannot be drawn, so a table shows a gap rather
/// than failing.
fn dispersity_null_mean(record: &MaskRecord, chance: &ChanceConfig) -> f64 {
    dispersity_chance(std::slice::from_ref(&record.mask), chance)
        .ok()
        .and_then(|mut d| d.pop())
        .map_or(f64::NAN, |d| d.dispersity.null_mean)
}
