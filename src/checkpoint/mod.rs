//! Files on disk: atomic writes, the study's pickled checkpoint and masks, and (with the SCL
//! issue) our own safetensors checkpoints with JSON sidecars.

pub mod pickle;
pub mod study;

pub use study::{looks_like_pickle, StudyCheckpoint, StudyMask, StudySclKwargs};

use std::io::Write as _;
use std::path::Path;

use crate::{Error, Result};

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename, so a
/// killed process never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes named tensors as `.safetensors` atomically (moved to CPU, detached).
pub fn write_safetensors_atomic(path: &Path, tensors: &crate::model::Params) -> Result<()> {
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
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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
