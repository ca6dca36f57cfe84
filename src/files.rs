//! Files written so that nothing is lost: a killed process never leaves a half-written file
//! under its final name.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename, so a
/// killed process never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_rename(path, bytes, true)
}

/// [`write_atomic`] without the `fsync`: for files that are a deterministic function of their
/// settings (generated problems), whose reader checks them (CRC-32) and regenerates a damaged
/// one. A killed process still never leaves a half-written file under the final name; only a
/// power loss can, and the check catches it. Saves ~0.4 ms a file (measured: 1,401 `fsync`s,
/// 402 µs each).
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_rename(path, bytes, false)
}

fn write_via_rename(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
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
        .and_then(|_| if sync { file.sync_all() } else { Ok(()) })
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// This crate's folder (where it was built from).
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `path` as captions and committed outputs show it: relative to this crate's folder when it
/// lies inside it (`.` for the folder itself), `../shared/…` when it lies in the reference
/// folder beside it (the fixtures), `$AVR_CACHE/…` inside the caches `scripts/env.sh` names
/// (the Python environment's files, e.g. scikit-learn's digits), else as given. No machine's
/// absolute path ends up in a committed notebook.
pub fn shown_path(path: &Path) -> String {
    // Only an absolute cache folder can name where a path lies; an empty or relative one would
    // turn relative paths into `$AVR_CACHE/…`.
    let cache = std::env::var_os("AVR_CACHE")
        .map(PathBuf::from)
        .filter(|c| c.is_absolute());
    shown_path_with_cache(path, cache.as_deref())
}

fn shown_path_with_cache(path: &Path, cache: Option<&Path>) -> String {
    match cache.and_then(|cache| path.strip_prefix(cache).ok()) {
        Some(within) => Path::new("$AVR_CACHE").join(within).display().to_string(),
        None => shown_path_near_the_crate(path),
    }
}

fn shown_path_near_the_crate(path: &Path) -> String {
    let root = crate_root();
    if let Ok(inside) = path.strip_prefix(&root) {
        return match inside.as_os_str().is_empty() {
            true => ".".into(),
            false => inside.display().to_string(),
        };
    }
    let shared = root.parent().map(|parent| parent.join("shared"));
    match shared.and_then(|shared| path.strip_prefix(shared).ok()) {
        Some(within) => Path::new("../shared").join(within).display().to_string(),
        None => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_paths_name_no_machine_folder_inside_or_beside_the_crate() {
        let root = crate_root();
        assert_eq!(shown_path(&root), ".");
        assert_eq!(
            shown_path(&root.join("binary_masks/study")),
            "binary_masks/study"
        );
        let parent = root.parent().unwrap();
        let fixtures = parent.join("shared/fixtures/iraven");
        assert_eq!(shown_path(&fixtures), "../shared/fixtures/iraven");
        // Any other folder beside the crate is shown as it is.
        let beside = parent.join("elsewhere/data");
        assert_eq!(shown_path(&beside), beside.display().to_string());
    }

    #[test]
    fn shown_paths_name_the_caches_by_their_variable() {
        let cache = Path::new("/home/someone/.cache/avr-modularity");
        let digits = cache.join("venv/lib/sklearn/datasets/data/digits.csv.gz");
        assert_eq!(
            shown_path_with_cache(&digits, Some(cache)),
            "$AVR_CACHE/venv/lib/sklearn/datasets/data/digits.csv.gz"
        );
        // Without the variable, and for a path outside the cache, the crate's rules apply.
        let inside = crate_root().join("notebooks");
        assert_eq!(shown_path_with_cache(&inside, Some(cache)), "notebooks");
        assert_eq!(
            shown_path_with_cache(&digits, None),
            digits.display().to_string()
        );
    }
}
