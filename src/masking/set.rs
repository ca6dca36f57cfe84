//! Masks for every shape on one checkpoint: [`TaskSets`] (the shape datasets and the control),
//! [`train_mask_for_shape`], [`train_masks`] and the resulting [`MaskSet`].

use std::path::{Path, PathBuf};

use super::engine::{train_mask, MaskRun, MaskTask, MaskTrainConfig};
use super::Mask;
use crate::checkpoint::Checkpoint;
use crate::data::{AvrDataset, Shape, Split};
use crate::{Error, Result};

/// The shape datasets of a tasks folder (`<dir>/<shape>/`, our spelling or the study's) and the
/// control set `<dir>/originals/`, split into fitting and held-out problems.
#[derive(Debug, Clone)]
pub struct TaskSets {
    /// The folder holding one sub-folder per shape and `originals/`.
    pub dir: PathBuf,
    /// `(shape, fitting problems, held-out problems)`, in the order asked for.
    pub shapes: Vec<(Shape, AvrDataset, AvrDataset)>,
    /// Held-out problems of `originals` (control accuracy), when the folder has them.
    pub control: Option<AvrDataset>,
    /// Whether fitting and held-out problems are the same (tiny fixture sets): accuracies are
    /// then training accuracies, and tables say so.
    pub held_out_is_fit: bool,
}

impl TaskSets {
    /// Opens `shapes` under `dir`: the train split fits, validation + test are held out.
    pub fn open(dir: impl AsRef<Path>, shapes: &[Shape]) -> Result<TaskSets> {
        Self::open_with_splits(dir, shapes, &[Split::Train], &[Split::Val, Split::Test])
    }

    /// Opens `shapes` under `dir` with every split used both to fit and to evaluate — only for
    /// sets too small to split (the study's 24-problem fixture sets).
    pub fn open_unsplit(dir: impl AsRef<Path>, shapes: &[Shape]) -> Result<TaskSets> {
        let mut sets = Self::open_with_splits(dir, shapes, &Split::ALL, &Split::ALL)?;
        sets.held_out_is_fit = true;
        Ok(sets)
    }

    /// Opens `shapes` under `dir`, fitting on `fit` splits and evaluating on `held_out` splits.
    pub fn open_with_splits(
        dir: impl AsRef<Path>,
        shapes: &[Shape],
        fit: &[Split],
        held_out: &[Split],
    ) -> Result<TaskSets> {
        let dir = dir.as_ref().to_path_buf();
        if shapes.is_empty() {
            return Err(Error::NotEnough(format!(
                "{}: no shapes asked for",
                dir.display()
            )));
        }
        let shapes = shapes
            .iter()
            .map(|&shape| {
                let all = AvrDataset::open(shape.dir_in(&dir))?;
                let (f, h) = (all.select(fit, None), all.select(held_out, None));
                if f.is_empty() || h.is_empty() {
                    return Err(Error::bad_file(
                        &all.root,
                        format!("{shape}: no problems in the fitting or held-out splits"),
                    ));
                }
                Ok((shape, f, h))
            })
            .collect::<Result<Vec<_>>>()?;
        let originals = dir.join("originals");
        let control = match originals.is_dir() {
            true => Some(AvrDataset::open(&originals)?.select(held_out, None)),
            false => None,
        };
        Ok(TaskSets {
            dir,
            shapes,
            control,
            held_out_is_fit: false,
        })
    }

    /// The shapes, in order.
    pub fn shape_list(&self) -> Vec<Shape> {
        self.shapes.iter().map(|s| s.0).collect()
    }

    /// Every shape's fitting and held-out problems pooled: the task of the control mask that
    /// keeps what all shapes need (Csordás et al.'s "full" mask).
    pub fn pooled(&self) -> PooledShapes {
        let fit: Vec<&AvrDataset> = self.shapes.iter().map(|s| &s.1).collect();
        let held_out: Vec<&AvrDataset> = self.shapes.iter().map(|s| &s.2).collect();
        PooledShapes {
            fit: AvrDataset::concat(&self.dir, &fit),
            held_out: AvrDataset::concat(&self.dir, &held_out),
        }
    }

    /// The mask task of `shape` (named after it).
    pub fn task(&self, shape: Shape) -> Result<MaskTask<'_>> {
        let (_, fit, held_out) = self.shapes.iter().find(|s| s.0 == shape).ok_or_else(|| {
            Error::UnknownName(format!(
                "{}: {shape} was not opened (have {:?})",
                self.dir.display(),
                self.shape_list()
            ))
        })?;
        Ok(MaskTask {
            name: shape.to_string(),
            shape: Some(shape),
            fit,
            held_out,
            control: self.control.as_ref(),
        })
    }
}

/// All shapes' problems in one task (see [`TaskSets::pooled`]).
#[derive(Debug, Clone)]
pub struct PooledShapes {
    /// Every shape's fitting problems.
    pub fit: AvrDataset,
    /// Every shape's held-out problems.
    pub held_out: AvrDataset,
}

impl PooledShapes {
    /// The control-mask task, named `all-shapes`.
    pub fn task<'a>(&'a self, control: Option<&'a AvrDataset>) -> MaskTask<'a> {
        MaskTask {
            name: "all-shapes".into(),
            shape: None,
            fit: &self.fit,
            held_out: &self.held_out,
            control,
        }
    }
}

/// Trains the control mask on every shape pooled, with the same settings as the shape masks.
pub fn train_control_mask(
    ckpt: &Checkpoint,
    tasks: &TaskSets,
    cfg: &MaskTrainConfig,
) -> Result<MaskRun> {
    let pooled = tasks.pooled();
    train_mask(ckpt, &pooled.task(tasks.control.as_ref()), cfg)
}

/// Trains the mask of one shape on the frozen checkpoint.
pub fn train_mask_for_shape(
    ckpt: &Checkpoint,
    shape: Shape,
    tasks: &TaskSets,
    cfg: &MaskTrainConfig,
) -> Result<MaskRun> {
    train_mask(ckpt, &tasks.task(shape)?, cfg)
}

/// Trains one mask per shape of `tasks`, all with `cfg`.
pub fn train_masks(ckpt: &Checkpoint, tasks: &TaskSets, cfg: &MaskTrainConfig) -> Result<MaskSet> {
    let runs = tasks
        .shape_list()
        .into_iter()
        .map(|shape| train_mask_for_shape(ckpt, shape, tasks, cfg))
        .collect::<Result<Vec<_>>>()?;
    Ok(MaskSet {
        checkpoint: ckpt.name(),
        base_accuracy: ckpt.val_accuracy(),
        runs,
    })
}

/// Trains one mask per seed for `task` (everything else from `cfg`), named `<task>-s<seed>`:
/// replicates whose spread says how much of a module is the network's and how much the seed's.
/// An empty seed list is an error.
pub fn train_replicates(
    ckpt: &Checkpoint,
    task: &MaskTask<'_>,
    cfg: &MaskTrainConfig,
    seeds: &[u64],
) -> Result<Vec<MaskRun>> {
    if seeds.is_empty() {
        return Err(Error::NotEnough(format!(
            "replicates of '{}': the list of seeds is empty",
            task.name
        )));
    }
    seeds
        .iter()
        .map(|&seed| {
            let named = MaskTask {
                name: format!("{}-s{seed}", task.name),
                ..task.clone()
            };
            train_mask(ckpt, &named, &cfg.clone().with_seed(seed))
        })
        .collect()
}

/// [`train_masks`] with every shape trained once per seed ([`train_replicates`]).
pub fn train_mask_replicates(
    ckpt: &Checkpoint,
    tasks: &TaskSets,
    cfg: &MaskTrainConfig,
    seeds: &[u64],
) -> Result<MaskSet> {
    let mut runs = Vec::new();
    for shape in tasks.shape_list() {
        runs.extend(train_replicates(ckpt, &tasks.task(shape)?, cfg, seeds)?);
    }
    Ok(MaskSet {
        checkpoint: ckpt.name(),
        base_accuracy: ckpt.val_accuracy(),
        runs,
    })
}

/// Masks trained on one checkpoint, one per task. Its statistics and sharing come from
/// [`crate::analysis`], its figures from [`crate::plot`].
#[derive(Debug, Clone)]
pub struct MaskSet {
    /// The base checkpoint's name.
    pub checkpoint: String,
    /// Its measured validation accuracy, when known (fraction).
    pub base_accuracy: Option<f64>,
    /// One run per task.
    pub runs: Vec<MaskRun>,
}

impl MaskSet {
    /// The masks, in task order.
    pub fn masks(&self) -> Vec<Mask> {
        self.runs.iter().map(|r| r.mask.clone()).collect()
    }

    /// The run of `shape`.
    pub fn get(&self, shape: Shape) -> Option<&MaskRun> {
        self.runs.iter().find(|r| r.provenance.shape == Some(shape))
    }

    /// Saves every mask into `dir` (logits + sidecar naming the base checkpoint); returns the paths.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        self.runs.iter().map(|r| r.save(dir.as_ref())).collect()
    }

    /// The masks saved in `dir` (one checkpoint's: `<task>-s<seed>.safetensors` + sidecars +
    /// readings), in file-name order, as runs ([`MaskRun::load`]). Seed replicates are kept,
    /// so with `seed` given only that seed's masks are read (each task once). Masks of
    /// different checkpoints in one folder are refused, naming the first that differs.
    pub fn load_dir(dir: impl AsRef<Path>, seed: Option<u64>) -> Result<MaskSet> {
        let dir = dir.as_ref();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        let mut runs = Vec::new();
        for path in &paths {
            let run = MaskRun::load(path)?;
            if seed.is_none_or(|s| run.config.seed == s) {
                runs.push((path, run));
            }
        }
        let Some((_, first)) = runs.first() else {
            return Err(Error::bad_file(
                dir,
                "no masks (*.safetensors with .json sidecars)",
            ));
        };
        let base = first.provenance.base_hash.clone();
        if let Some((path, _)) = runs.iter().find(|(_, r)| r.provenance.base_hash != base) {
            return Err(Error::bad_file(
                path,
                "trained on another checkpoint than the folder's first mask",
            ));
        }
        Ok(MaskSet {
            checkpoint: checkpoint_name(&first.provenance.base_checkpoint),
            base_accuracy: first.provenance.base_accuracy,
            runs: runs.into_iter().map(|(_, r)| r).collect(),
        })
    }
}

/// A checkpoint's name from its path (`…/scl_official_val80.2.safetensors` → `scl_official_val80.2`).
fn checkpoint_name(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
}
