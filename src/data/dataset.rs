//! Folders of problem files and batches of them as tensors.
//!
//! Two layouts are recognised: the generators' `<config>/RAVEN_<k>_<split>.npz` (split from the
//! file name) and the study's `<split>/<config>/RAVEN_<k>_<suffix>.npz` (split from the folder;
//! the suffix is then meaningless, see `../shared/fixtures/README.md` §4.3).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::generate::{
    file_name, generate_problem, CandidateMode, ConfigSpec, GeneratorConfig, Preset,
};
use super::npz::{image_and_target, AvrProblem, CONFIGURATIONS, PANELS};
use super::render_cache::{self, block_sums, BlockSums, RenderKey, MAX_FACTOR};
use crate::{Error, Result};
use std::borrow::Cow;

/// Dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training problems (generators: indices 0–5 of every 10).
    Train,
    /// Validation problems (generators: indices 6–7 of every 10).
    Val,
    /// Test problems (generators: indices 8–9 of every 10).
    Test,
}

impl Split {
    /// Every split, in the order train, val, test.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split named `train`, `val` or `test` (exact, lower case); `None` otherwise.
    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "val" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }

    /// The lower-case name used in folder and file names (`train`, `val`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The generators' split for problem index `k`: 0–5 train, 6–7 val, 8–9 test.
    pub fn of_index(k: usize) -> Split {
        match k % 10 {
            0..=5 => Split::Train,
            6 | 7 => Split::Val,
            _ => Split::Test,
        }
    }
}

/// One problem file in a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemFile {
    /// The `RAVEN_<k>_<suffix>.npz` file (for a dataset generated on the fly: where
    /// `avr generate` would write it, named in errors).
    pub path: PathBuf,
    /// The configuration folder it sits in (one of [`CONFIGURATIONS`], e.g. `center_single`).
    pub configuration: String,
    /// Its split: from the `<split>/` folder in the study's layout, else from the file name.
    pub split: Split,
    /// How to render the problem when it is generated on demand instead of read (see
    /// [`AvrDataset::open`]).
    #[serde(default)]
    pub generated: Option<ProblemRecipe>,
}

/// Everything that determines a generated problem: rendered from it, the problem is
/// pixel-identical to the file `avr generate` writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProblemRecipe {
    /// The generator preset (`originals`, a shape, …).
    pub preset: String,
    /// The candidate mode.
    pub mode: CandidateMode,
    /// The generator seed.
    pub seed: u64,
    /// The problem's index within its configuration.
    pub k: usize,
}

/// A scanned folder of problem files (nothing is loaded until a batch asks for it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AvrDataset {
    /// The folder that was scanned.
    pub root: PathBuf,
    /// Files sorted by path, so order never depends on the filesystem (a study bug).
    pub files: Vec<ProblemFile>,
}

/// How problems become tensors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Transpose every panel (rows ↔ columns) as the study's loader did; its checkpoint and
    /// masks need it (default false).
    pub transpose_panels: bool,
    /// Scale to f32 in [0, 1] (default true); false keeps u8.
    pub to_unit_float: bool,
    /// Resize panels to this side by area averaging (e.g. 80 for the official preset; default
    /// none). Needs `to_unit_float`.
    pub resize: Option<i64>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            transpose_panels: false,
            to_unit_float: true,
            resize: None,
        }
    }
}

/// A batch: panels `(B, 16, H, W)`, targets `(B,)` i64, and where each problem came from.
#[derive(Debug)]
pub struct Batch {
    /// Panels `(B, 16, H, W)`: 8 context panels then 8 candidates; f32 in [0, 1] or u8 (see
    /// [`BatchOptions`]), `H = W` the file's side or the resized one.
    pub images: Tensor,
    /// Index of the correct candidate, `(B,)` i64 in `0..8`.
    pub targets: Tensor,
    /// Configuration folder of each problem, in batch order.
    pub configurations: Vec<String>,
    /// File of each problem, in batch order.
    pub paths: Vec<PathBuf>,
}

fn split_from_file_name(name: &str) -> Option<Split> {
    Split::parse(name.strip_suffix(".npz")?.rsplit('_').next()?)
}

impl AvrDataset {
    /// Scans `root` in either layout. Errors if nothing is found. A folder whose
    /// `generator.json` says `"on_the_fly": true` (written by `avr generate --on-the-fly`) holds
    /// no files: its problems are generated from the seed when batches need them.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::bad_file(&root, "dataset folder does not exist"));
        }
        let manifest = root.join("generator.json");
        if manifest.is_file() {
            let cfg = GeneratorConfig::read(&manifest)?;
            if cfg.on_the_fly {
                return Self::generated(&root, cfg);
            }
        }
        let mut files = Vec::new();
        for split in Split::ALL {
            let dir = root.join(split.name());
            if dir.is_dir() {
                scan_configs(&dir, Some(split), &mut files)?;
            }
        }
        scan_configs(&root, None, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if files.is_empty() {
            return Err(Error::bad_file(
                &root,
                "no RAVEN_*.npz files in <config>/ or <split>/<config>/ folders",
            ));
        }
        Ok(AvrDataset { root, files })
    }

    /// The problems `cfg` describes, generated on demand; `root` only names them.
    pub fn generated(root: &Path, cfg: GeneratorConfig) -> Result<Self> {
        Preset::named(&cfg.preset)?;
        let mut files = Vec::new();
        for spec in cfg.specs()? {
            files.extend((0..cfg.per_config).map(|k| ProblemFile {
                path: root.join(spec.folder).join(file_name(k)),
                configuration: spec.folder.to_string(),
                split: Split::of_index(k),
                generated: Some(ProblemRecipe {
                    preset: cfg.preset.clone(),
                    mode: cfg.mode,
                    seed: cfg.seed,
                    k,
                }),
            }));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if files.is_empty() {
            return Err(Error::bad_file(
                root.join("generator.json"),
                "generates no problems (per_config 0 or no configurations)",
            ));
        }
        Ok(AvrDataset {
            root: root.to_path_buf(),
            files,
        })
    }

    /// The bytes of problem `i`: its file, or its panels rendered from the seed.
    fn problem_bytes(&self, i: usize) -> Result<ProblemBytes> {
        let file = &self.files[i];
        match &file.generated {
            Some(recipe) => {
                let p = generated_problem(file, recipe)?;
                Ok(ProblemBytes::Rendered(p.image, p.side, p.target))
            }
            None => std::fs::read(&file.path)
                .map(ProblemBytes::File)
                .map_err(|e| Error::io(&file.path, e)),
        }
    }

    /// Problem `i` whole (panels and metadata): read from its file, or generated from the seed.
    pub fn problem(&self, i: usize) -> Result<AvrProblem> {
        let file = self.files.get(i).ok_or_else(|| {
            Error::bad_file(
                &self.root,
                format!("problem {i} asked for; the set holds {}", self.files.len()),
            )
        })?;
        match &file.generated {
            Some(recipe) => generated_problem(file, recipe),
            None => AvrProblem::read(&file.path),
        }
    }

    /// Only the files of the given splits (and, if given, configurations).
    pub fn select(&self, splits: &[Split], configurations: Option<&[&str]>) -> AvrDataset {
        let files = self
            .files
            .iter()
            .filter(|f| {
                splits.contains(&f.split)
                    && configurations.is_none_or(|c| c.contains(&f.configuration.as_str()))
            })
            .cloned()
            .collect();
        AvrDataset {
            root: self.root.clone(),
            files,
        }
    }

    /// The problems of several datasets in one (e.g. every shape set pooled, for the control
    /// mask); `root` names the result. Files keep their sources' order.
    pub fn concat(root: impl AsRef<Path>, parts: &[&AvrDataset]) -> AvrDataset {
        AvrDataset {
            root: root.as_ref().to_path_buf(),
            files: parts.iter().flat_map(|d| d.files.iter().cloned()).collect(),
        }
    }

    /// Whether the problems are generated on demand (all of them).
    pub fn is_generated(&self) -> bool {
        !self.files.is_empty() && self.files.iter().all(|f| f.generated.is_some())
    }

    /// At most `n` problems, evenly spread over the set (`0` or `n ≥ len` keeps all): a fixed,
    /// seed-independent subset; files are sorted by path, so every configuration keeps its share.
    pub fn spread(&self, n: usize) -> AvrDataset {
        let mut d = self.clone();
        if n > 0 && d.files.len() > n {
            let step = d.files.len() as f64 / n as f64;
            d.files = (0..n)
                .map(|i| d.files[(i as f64 * step) as usize].clone())
                .collect();
        }
        d
    }

    /// Only the files of one split.
    pub fn split(&self, split: Split) -> AvrDataset {
        self.select(&[split], None)
    }

    /// The first of `splits` that holds any problems (the last one, empty, when none does):
    /// e.g. `[Val, Test]` for sets with only train/test folders, like the study's.
    pub fn first_split(&self, splits: &[Split]) -> AvrDataset {
        splits
            .iter()
            .map(|&s| self.split(s))
            .find(|d| !d.is_empty())
            .unwrap_or_else(|| self.split(splits.last().copied().unwrap_or(Split::Test)))
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the dataset holds no problems (possible after [`select`](Self::select)).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Loads problems `indices` as one batch on `device`.
    pub fn batch(&self, indices: &[usize], options: BatchOptions, device: Device) -> Result<Batch> {
        if indices.is_empty() {
            return Err(Error::bad_file(
                &self.root,
                "a batch of no problems was asked for",
            ));
        }
        if let Some(&i) = indices.iter().find(|&&i| i >= self.files.len()) {
            return Err(Error::bad_file(
                &self.root,
                format!("problem {i} asked for; the set holds {}", self.files.len()),
            ));
        }
        if let Some(reduced) = self.generated_block_sums(indices, options)? {
            return self.batch_from_block_sums(indices, &reduced, options, device);
        }
        let files: Vec<ProblemBytes> = indices
            .iter()
            .map(|&i| self.problem_bytes(i))
            .collect::<Result<_>>()?;
        let parsed = files
            .iter()
            .zip(indices)
            .map(|(bytes, &i)| bytes.image_and_target(&self.files[i].path))
            .collect::<Result<Vec<_>>>()?;
        let side = parsed.first().map(|p| p.1).unwrap_or(160);
        if let Some(p) = parsed.iter().position(|p| p.1 != side) {
            return Err(Error::bad_file(
                &self.files[indices[p]].path,
                format!("panel size {} differs from the batch's {side}", parsed[p].1),
            ));
        }
        let (b, s, per) = (parsed.len() as i64, side as i64, PANELS * side * side);
        let factor = options
            .resize
            .filter(|&r| options.to_unit_float && r > 0 && r < s && s % r == 0)
            .map(|r| (s / r) as usize);
        let mut images = match factor {
            // Integer downscaling (160 → 80): box-average the u8 pixels straight into f32 —
            // the same values as area resizing, without a full-size float copy.
            Some(f) => {
                let r = side / f;
                let mut out = vec![0f32; parsed.len() * PANELS * r * r];
                let scale = 1.0 / (255.0 * (f * f) as f32);
                for (dst, (pixels, _, _)) in out.chunks_exact_mut(PANELS * r * r).zip(&parsed) {
                    box_downsample(pixels, side, f, scale, dst);
                }
                Tensor::from_slice(&out).reshape([b, PANELS as i64, r as i64, r as i64])
            }
            None => {
                // Copy each file's pixels straight into the tensor's memory: one copy per problem.
                let images = Tensor::empty([b, PANELS as i64, s, s], (Kind::Uint8, Device::Cpu));
                {
                    // SAFETY: `images` is a fresh contiguous u8 CPU tensor of exactly b·per
                    // bytes, and no other reference to its storage exists while this slice lives.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            images.data_ptr() as *mut u8,
                            parsed.len() * per,
                        )
                    };
                    for (chunk, (pixels, _, _)) in dst.chunks_exact_mut(per).zip(&parsed) {
                        chunk.copy_from_slice(pixels);
                    }
                }
                images
            }
        };
        if options.transpose_panels {
            images = images.transpose(2, 3).contiguous();
        }
        if factor.is_none() {
            images = if options.to_unit_float {
                images.to_kind(Kind::Float).g_div_scalar_(255.0)
            } else {
                images
            };
            if let Some(side) = options.resize.filter(|&r| r != s && options.to_unit_float) {
                images = images.adaptive_avg_pool2d([side, side]);
            }
        }
        let targets: Vec<i64> = parsed.iter().map(|p| p.2).collect();
        Ok(self.batch_of(indices, images, &targets, device))
    }

    /// The batch of `indices` with its panels and answers.
    fn batch_of(
        &self,
        indices: &[usize],
        images: Tensor,
        targets: &[i64],
        device: Device,
    ) -> Batch {
        Batch {
            images: images.to_device(device),
            targets: Tensor::from_slice(targets).to_device(device),
            configurations: indices
                .iter()
                .map(|&i| self.files[i].configuration.clone())
                .collect(),
            paths: indices
                .iter()
                .map(|&i| self.files[i].path.clone())
                .collect(),
        }
    }

    /// Generated problems asked for at an integer fraction of their side: their block sums, from
    /// the render cache (rendered and kept on a miss). `None` where the plain path applies
    /// (files, no resize, u8 output, or a side the resize does not divide).
    fn generated_block_sums(
        &self,
        indices: &[usize],
        options: BatchOptions,
    ) -> Result<Option<Vec<std::sync::Arc<BlockSums>>>> {
        let Some(side) = options.resize.filter(|&r| r > 0 && options.to_unit_float) else {
            return Ok(None);
        };
        let r = side as usize;
        let mut reduced = Vec::with_capacity(indices.len());
        for &i in indices {
            let file = &self.files[i];
            let Some(recipe) = &file.generated else {
                return Ok(None);
            };
            let key = RenderKey {
                recipe: recipe.clone(),
                configuration: file.configuration.clone(),
                side: r,
            };
            if let Some(kept) = render_cache::get(&key) {
                reduced.push(kept);
                continue;
            }
            let ProblemBytes::Rendered(pixels, source_side, target) = self.problem_bytes(i)? else {
                return Ok(None);
            };
            if r >= source_side || source_side % r != 0 || source_side / r > MAX_FACTOR {
                return Ok(None);
            }
            let factor = source_side / r;
            let mut sums = vec![0u16; PANELS * r * r];
            block_sums(&pixels, source_side, factor, &mut sums);
            let value = BlockSums {
                sums,
                source_side,
                factor,
                target,
            };
            reduced.push(render_cache::keep(key, value));
        }
        Ok(Some(reduced))
    }

    /// A batch of reduced problems: each block sum times 1 / (255 f²), as [`box_downsample`]
    /// computes it from the pixels, so the values are the same to the bit.
    fn batch_from_block_sums(
        &self,
        indices: &[usize],
        reduced: &[std::sync::Arc<BlockSums>],
        options: BatchOptions,
        device: Device,
    ) -> Result<Batch> {
        let first = &reduced[0];
        if let Some(p) = reduced
            .iter()
            .position(|b| b.source_side != first.source_side)
        {
            return Err(Error::bad_file(
                &self.files[indices[p]].path,
                format!(
                    "panel size {} differs from the batch's {}",
                    reduced[p].source_side, first.source_side
                ),
            ));
        }
        let (f, r) = (first.factor, first.source_side / first.factor);
        let scale = 1.0 / (255.0 * (f * f) as f32);
        let values: Vec<f32> = reduced
            .iter()
            .flat_map(|b| b.sums.iter().map(move |&s| s as f32 * scale))
            .collect();
        let shape = [reduced.len() as i64, PANELS as i64, r as i64, r as i64];
        let mut images = Tensor::from_slice(&values).reshape(shape);
        if options.transpose_panels {
            images = images.transpose(2, 3).contiguous();
        }
        let targets: Vec<i64> = reduced.iter().map(|b| b.target).collect();
        Ok(self.batch_of(indices, images, &targets, device))
    }
}

/// A problem as read (a whole `.npz` file) or as rendered (panels, side, target).
enum ProblemBytes {
    File(Vec<u8>),
    Rendered(Vec<u8>, usize, i64),
}

impl ProblemBytes {
    fn image_and_target(&self, path: &Path) -> Result<(Cow<'_, [u8]>, usize, i64)> {
        match self {
            ProblemBytes::File(bytes) => image_and_target(path, bytes),
            ProblemBytes::Rendered(pixels, side, target) => {
                Ok((Cow::Borrowed(pixels), *side, *target))
            }
        }
    }
}

/// Mean of each `f × f` block of every panel in `pixels` (`16 × side²` u8), times `scale`·f²:
/// the block sums (integers, so exact in f32) times `scale`, as the render cache's batches are.
fn box_downsample(pixels: &[u8], side: usize, f: usize, scale: f32, dst: &mut [f32]) {
    let mut sums = vec![0u32; dst.len()];
    block_sums(pixels, side, f, &mut sums);
    for (out, &s) in dst.iter_mut().zip(&sums) {
        *out = s as f32 * scale;
    }
}

/// The problem a recipe describes, made again from its seed.
fn generated_problem(file: &ProblemFile, recipe: &ProblemRecipe) -> Result<AvrProblem> {
    let spec = ConfigSpec::by_name(&file.configuration)
        .ok_or_else(|| Error::bad_file(&file.path, "unknown configuration folder"))?;
    let preset = Preset::named(&recipe.preset)?;
    Ok(generate_problem(spec, &preset, recipe.mode, recipe.seed, recipe.k)?.problem)
}

/// Adds `dir/<config>/RAVEN_*.npz` files; the split is `split` or taken from the file name.
fn scan_configs(dir: &Path, split: Option<Split>, out: &mut Vec<ProblemFile>) -> Result<()> {
    for config in CONFIGURATIONS {
        let folder = dir.join(config);
        if !folder.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&folder, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if !name.starts_with("RAVEN_") || !name.ends_with(".npz") {
                continue;
            }
            let Some(split) = split.or_else(|| split_from_file_name(&name)) else {
                continue;
            };
            out.push(ProblemFile {
                path,
                configuration: config.to_string(),
                split,
                generated: None,
            });
        }
    }
    Ok(())
}
