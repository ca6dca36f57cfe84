//! Where the reference fixtures (`shared/fixtures`: the study's checkpoint, masks and datasets,
//! original I-RAVEN/RAVEN problems) are on this machine.

use std::path::{Path, PathBuf};

use crate::data::Shape;

/// `$AVR_FIXTURES`, else the first `shared/fixtures` beside the crate or one of its ancestors,
/// else `/work/shared/fixtures`. `None` when none of them exists.
pub fn fixtures_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("AVR_FIXTURES").map(PathBuf::from) {
        return dir.is_dir().then_some(dir);
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .map(|a| a.join("shared").join("fixtures"))
        .chain(std::iter::once(PathBuf::from("/work/shared/fixtures")))
        .find(|d| d.join("README.md").is_file())
}

/// Like [`fixtures_dir`] but an error that says how to point at the fixtures.
pub fn require_fixtures() -> crate::Result<PathBuf> {
    fixtures_dir().ok_or_else(|| {
        crate::Error::Config(
            "reference fixtures not found: set AVR_FIXTURES to the shared/fixtures folder".into(),
        )
    })
}

/// The study's masks of one level (`SCL_50`, `SCL_70`, `SCL_90`), one per shape in
/// [`Shape::ALL`] order (the first file of each shape folder, as the study's analysis took).
pub fn study_masks(level: &str) -> crate::Result<Vec<crate::masking::Mask>> {
    let root = require_fixtures()?.join("seed/binary_masks").join(level);
    Shape::ALL
        .iter()
        .map(|shape| {
            let dir = root.join(shape.study_folder());
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| crate::Error::io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            files.sort();
            let first = files
                .into_iter()
                .next()
                .ok_or_else(|| crate::Error::bad_file(&dir, "no mask file"))?;
            crate::masking::Mask::load_study(first)
        })
        .collect()
}

/// Where the study's checkpoint lies inside the fixtures.
pub const STUDY_CHECKPOINT: &str = "seed/checkpoint/SCL_pretrain_80.ckpt";

/// The study's checkpoint, [`STUDY_CHECKPOINT`] under the fixtures.
pub fn study_checkpoint_path() -> crate::Result<PathBuf> {
    Ok(require_fixtures()?.join(STUDY_CHECKPOINT))
}
