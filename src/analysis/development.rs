//! Module development over training: masks grouped by the checkpoint they were trained on, put in
//! order of that checkpoint's *measured* validation accuracy (read from the sidecars — never
//! from a position in a list, the study's mislabelling bug), with a warning when masks being
//! compared were trained with different α.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::masks::{mask_stats, sharing_matrix_with, Overlap, SharingMatrix};
use crate::checkpoint::read_sidecar;
use crate::display::Table;
use crate::masking::engine::MaskSidecar;
use crate::masking::{check_comparable, Mask, MixedSettings};
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
}

impl MaskRecord {
    /// The base checkpoint's file: the sidecar's path as given, else resolved against the
    /// mask file's ancestor folders (sidecars store the path relative to where `avr` ran).
    pub fn base_checkpoint_path(&self) -> Option<PathBuf> {
        let given = PathBuf::from(&self.sidecar.base_checkpoint);
        if given.is_file() {
            return Some(given);
        }
        self.path
            .ancestors()
            .skip(1)
            .map(|a| a.join(&given))
            .find(|p| p.is_file())
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
                Ok(MaskRecord {
                    path,
                    mask,
                    sidecar,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if records.is_empty() {
            return Err(Error::Config(format!(
                "{}: no mask files (*.safetensors with .json sidecars)",
                dir.as_ref().display()
            )));
        }
        let masks: Vec<Mask> = records.iter().map(|r| r.mask.clone()).collect();
        check_comparable(&masks, mixed)?;
        records.sort_by(|a, b| {
            a.sidecar
                .base_accuracy
                .partial_cmp(&b.sidecar.base_accuracy)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.mask.name.cmp(&b.mask.name))
        });
        Ok(Development { records, mixed })
    }

    /// Checkpoints in order of measured accuracy: `(name, accuracy)`.
    pub fn checkpoints(&self) -> Vec<(String, Option<f64>)> {
        let mut out: Vec<(String, Option<f64>)> = Vec::new();
        for r in &self.records {
            if !out.iter().any(|(c, _)| *c == r.checkpoint()) {
                out.push((r.checkpoint(), r.sidecar.base_accuracy));
            }
        }
        out
    }

    /// A warning when the masks were not all trained with the same settings (possible only
    /// when loaded with [`MixedSettings::Allow`]).
    pub fn mixed_settings_warning(&self) -> Option<String> {
        let masks: Vec<Mask> = self.records.iter().map(|r| r.mask.clone()).collect();
        check_comparable(&masks, MixedSettings::Refuse)
            .err()
            .map(|e| e.to_string())
    }

    /// One row per mask: checkpoint, its measured accuracy, task, α, kept %, dispersity, and the
    /// deterministic-mask accuracies from training.
    pub fn table(&self) -> Result<Table> {
        let stats: Vec<_> = self.records.iter().map(|r| mask_stats(&r.mask)).collect();
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
                "task".into(),
                self.records
                    .iter()
                    .map(|r| r.mask.name.clone())
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
                "task_acc_%".into(),
                self.records
                    .iter()
                    .map(|r| pct(r.sidecar.final_task_accuracy))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "control_acc_%".into(),
                self.records
                    .iter()
                    .map(|r| pct(r.sidecar.final_control_accuracy))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "inverted_task_acc_%".into(),
                self.records
                    .iter()
                    .map(|r| pct(r.sidecar.final_inverted_task_accuracy))
                    .collect::<Vec<_>>(),
            ),
        ])?;
        Ok(Table::new(df).with_caption("masks by measured checkpoint accuracy"))
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

    /// Inline display in evcxr (`text/html`): the [`table`](Self::table) of masks.
    pub fn evcxr_display(&self) {
        match self.table().and_then(|t| t.to_html()) {
            Ok(html) => println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT"),
            Err(e) => println!("{e}"),
        }
    }
}
