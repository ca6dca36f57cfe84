//! [`Checkpoint`]: a trained SCL as the notebooks and the CLI see it — ours (`.safetensors` +
//! `.json` sidecar) or the study's pickle alike, with its input spec, measured accuracies and
//! path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{looks_like_pickle, read_safetensors, write_atomic, StudyCheckpoint};
use crate::model::{SclModel, SclVariant, SeedSclConfig};
use crate::{Error, Result};

/// The JSON sidecar written next to each of our checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointSidecar {
    /// `official` or `seed` (also inside `model`; kept for readers of older sidecars).
    pub variant: String,
    /// Panel side the model was trained at.
    pub image_size: i64,
    /// The full architecture: enough to rebuild a non-default model. Older sidecars lack it;
    /// then the default architecture of `variant` at `image_size` is assumed.
    #[serde(default)]
    pub model: Option<SclVariant>,
    /// Panels fed transposed (the study's loader's habit); false for everything we train.
    #[serde(default)]
    pub transpose_panels: bool,
    /// Optimiser step at which the checkpoint was written.
    pub step: usize,
    /// Validation accuracy (fraction) measured when the checkpoint was written.
    pub measured_val_accuracy: f64,
    /// Number of validation problems behind `measured_val_accuracy` (0 when unknown).
    #[serde(default)]
    pub val_problems: usize,
    /// The training configuration (the train stage's `TrainConfig`, as JSON).
    pub train_config: serde_json::Value,
    /// Crate version that wrote the file.
    pub code_version: String,
    /// Accuracies measured after training (`avr eval --record`), e.g. on the held-out test
    /// split that no checkpoint selection touched; [`Checkpoint::test_accuracy`] reads it.
    #[serde(default)]
    pub evaluations: Vec<RecordedAccuracy>,
    /// CRC-32 of the weights file, checked on load (older sidecars lack it).
    #[serde(default)]
    pub weights_crc32: Option<u32>,
}

/// An accuracy measured on a named dataset, with its n and 95 % Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedAccuracy {
    /// The dataset folder evaluated.
    pub data: String,
    /// The splits evaluated (`["test"]` for the held-out reading).
    pub splits: Vec<String>,
    /// Problems solved.
    pub correct: usize,
    /// Problems evaluated.
    pub n: usize,
    /// `correct / n`.
    pub accuracy: f64,
    /// 95 % Wilson interval of `accuracy`.
    pub interval: (f64, f64),
}

impl RecordedAccuracy {
    /// `44.8 % [41.0, 48.7] (n = 500)`.
    pub fn summary(&self) -> String {
        format!(
            "{:.1} % [{:.1}, {:.1}] (n = {})",
            100.0 * self.accuracy,
            100.0 * self.interval.0,
            100.0 * self.interval.1,
            self.n
        )
    }
}

impl CheckpointSidecar {
    /// The architecture this sidecar describes.
    pub fn architecture(&self, path: &Path) -> Result<SclVariant> {
        if let Some(model) = &self.model {
            return Ok(model.clone());
        }
        match self.variant.as_str() {
            "official" => Ok(SclVariant::official(self.image_size)),
            "seed" => Ok(SclVariant::seed(self.image_size)),
            other => Err(Error::bad_file(
                path.with_extension("json"),
                format!("unknown variant '{other}' (expected official or seed)"),
            )),
        }
    }
}

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// One of ours: safetensors weights + JSON sidecar.
    Ours,
    /// The study's pickled `.ckpt` (lucidrains SCL, panels transposed).
    Study,
}

/// A trained model with what is known about it.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model, its input spec included ([`SclModel::batch_options`]).
    pub model: SclModel,
    /// The file it was read from.
    pub path: PathBuf,
    /// Ours or the study's.
    pub kind: CheckpointKind,
    /// Our sidecar (absent for the study's pickle).
    pub sidecar: Option<CheckpointSidecar>,
}

impl Checkpoint {
    /// Reads a checkpoint, telling the formats apart by content: the study's files are pickles,
    /// ours safetensors with a `.json` sidecar. Every tensor is checked against the architecture.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::bad_file(path, "checkpoint file does not exist"));
        }
        if looks_like_pickle(path) {
            let model = study_model(path)?;
            super::check_finite(path, &model.params)?;
            return Ok(Checkpoint {
                model,
                path: path.to_path_buf(),
                kind: CheckpointKind::Study,
                sidecar: None,
            });
        }
        let params = read_safetensors(path)?;
        let sidecar: CheckpointSidecar = super::read_sidecar(path)?;
        super::verify_crc32(path, sidecar.weights_crc32)?;
        super::check_finite(path, &params)?;
        let variant = sidecar.architecture(path)?;
        let json = path.with_extension("json");
        let model = SclModel::from_params(variant, params, &path.display().to_string())
            .map_err(|e| Error::bad_file(&json, format!("the architecture it describes: {e}")))?
            .with_transposed_panels(sidecar.transpose_panels);
        Ok(Checkpoint {
            model,
            path: path.to_path_buf(),
            kind: CheckpointKind::Ours,
            sidecar: Some(sidecar),
        })
    }

    /// The file stem (`scl_official_val59.0`, `SCL_pretrain_80`).
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The validation accuracy measured when it was saved (ours only).
    pub fn val_accuracy(&self) -> Option<f64> {
        self.sidecar.as_ref().map(|s| s.measured_val_accuracy)
    }

    /// The latest accuracy recorded on the test split alone (ours only).
    pub fn test_accuracy(&self) -> Option<&RecordedAccuracy> {
        let evaluations = &self.sidecar.as_ref()?.evaluations;
        evaluations.iter().rev().find(|e| e.splits == ["test"])
    }

    /// Stores `accuracy` in the sidecar (replacing an earlier reading of the same data and
    /// splits) and rewrites it atomically. The study's pickles have no sidecar: an error.
    pub fn record(&mut self, accuracy: RecordedAccuracy) -> Result<()> {
        let Some(sidecar) = self.sidecar.as_mut() else {
            return Err(Error::bad_file(
                &self.path,
                "the study's checkpoints have no sidecar to record an accuracy in",
            ));
        };
        sidecar
            .evaluations
            .retain(|e| (&e.data, &e.splits) != (&accuracy.data, &accuracy.splits));
        sidecar.evaluations.push(accuracy);
        let json = serde_json::to_vec_pretty(sidecar).map_err(Error::from)?;
        write_atomic(&self.path.with_extension("json"), &json)
    }

    /// The path as a string, for sidecars that name their base checkpoint.
    pub fn path_string(&self) -> String {
        self.path.display().to_string()
    }

    /// A summary table row set: name, kind, architecture, input, accuracy, parameters.
    pub fn summary(&self) -> Vec<(String, String)> {
        let accuracy = match (&self.sidecar, self.val_accuracy()) {
            (Some(s), Some(a)) if s.val_problems > 0 => {
                format!("{:.1} % (n = {})", 100.0 * a, s.val_problems)
            }
            (_, Some(a)) => format!("{:.1} %", 100.0 * a),
            _ => "not measured".into(),
        };
        vec![
            ("checkpoint".into(), self.name()),
            ("kind".into(), format!("{:?}", self.kind).to_lowercase()),
            (
                "architecture".into(),
                format!("{} SCL", self.model.variant_name()),
            ),
            (
                "input".into(),
                format!(
                    "{} px, panels {}",
                    self.model.image_size(),
                    if self.model.transpose_panels {
                        "transposed"
                    } else {
                        "as stored"
                    }
                ),
            ),
            ("validation accuracy".into(), accuracy),
            (
                "test accuracy".into(),
                self.test_accuracy()
                    .map_or("not measured".into(), RecordedAccuracy::summary),
            ),
            (
                "trainable parameters".into(),
                self.model.num_trainable().to_string(),
            ),
            ("path".into(), crate::files::shown_path(&self.path)),
        ]
    }

    /// Inline display in evcxr: a two-column table.
    pub fn evcxr_display(&self) {
        crate::display::display_key_values(&self.summary());
    }
}

/// The study's pickled checkpoint as the `seed` variant (its loader transposed panels).
fn study_model(path: &Path) -> Result<SclModel> {
    let ckpt = StudyCheckpoint::load(path)?;
    let k = &ckpt.kwargs;
    if k.attr_net_hidden_dims.len() != 1 {
        return Err(Error::bad_file(
            path,
            "only one attribute-net hidden layer is supported",
        ));
    }
    let cfg = SeedSclConfig {
        image_size: k.image_size,
        conv_channels: k.conv_channels.clone(),
        conv_output_dim: k.conv_output_dim,
        attr_heads: k.attr_heads,
        attr_hidden: k.attr_net_hidden_dims[0],
        rel_net_hidden_dims: k.rel_net_hidden_dims.clone(),
    };
    Ok(SclModel::from_params(
        SclVariant::Seed(cfg),
        ckpt.params,
        &path.display().to_string(),
    )?
    .with_transposed_panels(true))
}

/// Writes `<dir>/<stem>.safetensors` and its sidecar, both atomically; returns the weights' path.
pub fn save_checkpoint(
    model: &SclModel,
    dir: &Path,
    stem: &str,
    sidecar: &CheckpointSidecar,
) -> Result<PathBuf> {
    let weights = dir.join(format!("{stem}.safetensors"));
    // Sidecar first, then the weights into place: weights never lack their description.
    let staged = super::stage_safetensors(&weights, &model.params)?;
    let sidecar = CheckpointSidecar {
        weights_crc32: Some(staged.crc32),
        ..sidecar.clone()
    };
    let json = serde_json::to_vec_pretty(&sidecar).map_err(Error::from)?;
    write_atomic(&dir.join(format!("{stem}.json")), &json)?;
    staged.commit()?;
    Ok(weights)
}
