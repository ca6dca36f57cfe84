//! Files on disk: the study's pickled checkpoint and masks, our safetensors checkpoints with
//! JSON sidecars, and [`Checkpoint`], which reads both.

pub mod ours;
pub mod pickle;
pub mod study;

pub use ours::{save_checkpoint, Checkpoint, CheckpointKind, CheckpointSidecar, RecordedAccuracy};
pub use study::{looks_like_pickle, StudyCheckpoint, StudyMask, StudySclKwargs};

use std::path::Path;

pub use crate::files::write_atomic;

use crate::{Error, Result};

/// Writes named tensors as `.safetensors` atomically (moved to CPU, detached); returns the
/// file's CRC-32, which sidecars record so that a damaged or replaced file is noticed on load.
pub fn write_safetensors_atomic(path: &Path, tensors: &crate::model::Params) -> Result<u32> {
    let staged = stage_safetensors(path, tensors)?;
    let crc = staged.crc32;
    staged.commit()?;
    Ok(crc)
}

/// A `.safetensors` file written under a temporary name, not yet in place: write its sidecar
/// (with [`Staged::crc32`]) first, then [`Staged::commit`], so that at every moment the
/// weights on disk have a sidecar that describes them.
#[derive(Debug)]
pub struct Staged {
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    /// CRC-32 of the staged file's bytes.
    pub crc32: u32,
}

impl Staged {
    /// Moves the file into place (atomic rename).
    pub fn commit(self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for Staged {
    /// A staged file that was never committed (its sidecar could not be written) is removed;
    /// after a commit the temporary name no longer exists and this does nothing.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Writes `tensors` to a temporary file beside `path`; see [`Staged`].
pub fn stage_safetensors(path: &Path, tensors: &crate::model::Params) -> Result<Staged> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let named: Vec<(&str, tch::Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu)))
        .collect();
    tch::Tensor::write_safetensors(&named, &tmp)
        .map_err(|e| Error::bad_file(&tmp, e.to_string()))?;
    // On disk before the rename, like `write_atomic`: a crash cannot leave an empty file
    // under the final name.
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    let written = std::fs::read(&tmp).map_err(|e| Error::io(&tmp, e))?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
        crc32: crate::data::npz::crc32(&written),
    })
}

/// Checks `path` against the CRC-32 its sidecar recorded (`None`: an older sidecar without
/// one, nothing to check). Safetensors has no checksum of its own: a flipped byte in the
/// tensor data would otherwise load as different weights without a word.
pub fn verify_crc32(path: &Path, recorded: Option<u32>) -> Result<()> {
    let sidecar = path.with_extension("json");
    let Some(recorded) = recorded else {
        return Ok(());
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let found = crate::data::npz::crc32(&bytes);
    if found != recorded {
        return Err(Error::bad_file(
            path,
            format!(
                "corrupt or replaced: CRC-32 {found:08x}, its sidecar {} recorded {recorded:08x}",
                sidecar.display()
            ),
        ));
    }
    Ok(())
}

/// Reads a `.safetensors` file into [`crate::model::Params`] (file order).
pub fn read_safetensors(path: &Path) -> Result<crate::model::Params> {
    let tensors = tch::Tensor::read_safetensors(path)
        .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file: {e}")))?;
    let mut out = crate::model::Params::new();
    for (name, t) in tensors {
        out.insert(name, t);
    }
    Ok(out)
}

/// Refuses tensors read from `path` that hold NaN or ±Inf: a model or mask that no
/// evaluation can mean anything with. The error names the first such tensor.
pub fn check_finite(path: &Path, params: &crate::model::Params) -> Result<()> {
    for (name, t) in params.iter() {
        use tch::Kind::{BFloat16, Double, Float, Half};
        if matches!(t.kind(), Float | Double | Half | BFloat16) {
            let bad = t
                .isfinite()
                .logical_not()
                .sum(tch::Kind::Int64)
                .int64_value(&[]);
            if bad > 0 {
                return Err(Error::bad_file(
                    path,
                    format!("tensor '{name}' holds {bad} non-finite values (NaN or Inf)"),
                ));
            }
        }
    }
    Ok(())
}

/// The JSON sidecar of `weights` (`x.safetensors` → `x.json`), parsed.
pub fn read_sidecar<T: serde::de::DeserializeOwned>(weights: &Path) -> Result<T> {
    let path = weights.with_extension("json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(&path, format!("bad sidecar: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("x.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
