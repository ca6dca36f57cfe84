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
    fixtures_dir().ok_or(crate::Error::FixturesMissing)
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

/// The study's published SCL_90 sharing matrix (`avr-seed-study.md` §6 R7: IoMin % on the
/// preprocessed masks, read from its figure), as `(shape, shape, value)` in our spelling.
pub const PUBLISHED_SHARING_SCL_90: [(&str, &str, f64); 10] = [
    ("circles", "triangles", 60.6),
    ("circles", "pentagons", 64.3),
    ("circles", "hexagons", 67.4),
    ("circles", "squares", 65.3),
    ("triangles", "pentagons", 68.4),
    ("triangles", "hexagons", 33.5),
    ("triangles", "squares", 71.5),
    ("pentagons", "hexagons", 72.5),
    ("pentagons", "squares", 63.0),
    ("hexagons", "squares", 71.4),
];

/// The published SCL_90 matrix beside ours: the deterministic `l > 0` reading, the sampled one
/// (mean ± SD over its samples) and the count-matched chance level, one row per pair; the
/// caption says how far each reading lies from the published values.
pub fn published_sharing_table(
    threshold: &crate::analysis::SharingChance,
    sampled: &crate::analysis::SharingChance,
) -> crate::Result<crate::display::Table> {
    use polars::prelude::*;
    let cell = |m: &crate::analysis::SharingChance, a: &str, b: &str| {
        m.get(&format!("SCL_90/{a}"), &format!("SCL_90/{b}"))
            .ok_or_else(|| crate::Error::UnknownName(format!("no SCL_90/{a}–{b} pair")))
    };
    let (mut pair, mut published, mut det, mut mean, mut sd, mut chance) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (a, b, value) in PUBLISHED_SHARING_SCL_90 {
        let (t, s) = (cell(threshold, a, b)?, cell(sampled, a, b)?);
        pair.push(format!("{a}–{b}"));
        published.push(value);
        det.push(t.observed);
        mean.push(s.observed);
        sd.push(s.observed_sd);
        chance.push(t.null_mean);
    }
    let worst = |ours: &[f64]| {
        ours.iter()
            .zip(&published)
            .map(|(o, p)| (o - p).abs())
            .fold(0.0, f64::max)
    };
    let caption = format!(
        "largest gap to the published values: l > 0 {:.1} points, sampled {:.1} points \
         ({}; chance from {} draws)",
        worst(&det),
        worst(&mean),
        sampled.binarisation(),
        threshold.draws
    );
    let df = df!(
        "pair" => pair, "published" => published.clone(), "l > 0" => det,
        "sampled mean" => mean, "sampled SD" => sd, "chance" => chance
    )?;
    let mut table = crate::display::Table::new(df).with_caption(caption);
    table.float_decimals = 1;
    Ok(table)
}
