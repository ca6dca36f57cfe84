//! Stage 4 — binary weight masks (Csordás et al., "Are Neural Nets Modular?", ICLR 2021).
//!
//! A mask holds one real-valued logit per masked scalar, stored apart from the frozen weights.
//! The deterministic binary mask is `l > 0` (the mode of Bernoulli(σ(l))); a masked parameter is
//! `w · b`, an inverted mask uses `1 − b`. BatchNorm running statistics are never masked.

use std::path::Path;

use tch::Kind;

pub mod bits;
pub mod engine;
pub mod overlap;
pub mod set;
pub mod toy;

use crate::checkpoint::StudyMask;
use crate::model::Params;
use crate::Result;

/// Mask logits by parameter name (tensors absent from the map are left unmasked).
#[derive(Debug, Clone)]
pub struct Mask {
    /// A short name for tables and plots (e.g. `SCL_90/squares`).
    pub name: String,
    /// One logit per masked scalar, by parameter name.
    pub logits: Params,
    /// The L1 coefficient α the mask was trained with, when known.
    pub alpha: Option<f64>,
    /// The training settings that decide a module's size — α, step cap, learning rate, logit
    /// init, samples K, τ, filter, stopping rule — as `(name, value)`; only those known (the
    /// study's files tell α alone). Masks compared with each other must agree on every setting
    /// both know ([`check_comparable`]); the seed is not among them (replicates differ in it).
    pub settings: Vec<(String, String)>,
}

/// Whether masks trained with different settings may be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixedSettings {
    /// An error naming the settings that differ (the default: module size mostly measures α,
    /// steps and learning rate when those differ).
    #[default]
    Refuse,
    /// The caller opts in (e.g. the study's own masks, trained with several α).
    Allow,
}

/// Refuses to compare masks that disagree on a training setting both know, unless `mixed` is
/// [`MixedSettings::Allow`]. The error names each differing setting and its values.
pub fn check_comparable(masks: &[Mask], mixed: MixedSettings) -> Result<()> {
    if mixed == MixedSettings::Allow {
        return Ok(());
    }
    let mut differing: Vec<String> = Vec::new();
    for (i, a) in masks.iter().enumerate() {
        for b in &masks[i + 1..] {
            for (key, va) in &a.settings {
                let vb = b.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v);
                if let Some(vb) = vb.filter(|vb| *vb != va) {
                    let line = format!("{key}: {va} ('{}') vs {vb} ('{}')", a.name, b.name);
                    if !differing.iter().any(|d| d.starts_with(&format!("{key}:"))) {
                        differing.push(line);
                    }
                }
            }
        }
    }
    if differing.is_empty() {
        return Ok(());
    }
    Err(crate::Error::Incomparable(format!(
        "the masks were trained with different settings — {}; their sizes and overlaps are not \
         comparable (opt in with MixedSettings::Allow / --allow-mixed-settings)",
        differing.join("; ")
    )))
}

impl Mask {
    /// Wraps logits.
    pub fn new(name: impl Into<String>, logits: Params, alpha: Option<f64>) -> Self {
        Mask {
            name: name.into(),
            logits,
            alpha,
            settings: alpha
                .map(|a| vec![("alpha".to_string(), format!("{a:e}"))])
                .unwrap_or_default(),
        }
    }

    /// The same mask, its settings taken from the config it was trained with.
    pub fn with_settings(mut self, cfg: &engine::MaskTrainConfig) -> Self {
        self.settings = cfg.comparable_settings();
        self
    }

    /// Reads one of the study's pickled mask files; `name` is `<level>/<shape>` taken from the
    /// two parent folders, the shape in our spelling (`SCL_90/pentagons`).
    pub fn load_study(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let study = StudyMask::load(path)?;
        let parent = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let shape_dir = path.parent().unwrap_or(Path::new(""));
        let level_dir = shape_dir.parent().unwrap_or(Path::new(""));
        // One spelling everywhere: the study's `pentagon` folder names the `pentagons` mask.
        let task = match parent(shape_dir).parse::<crate::data::Shape>() {
            Ok(shape) => shape.to_string(),
            Err(_) => parent(shape_dir),
        };
        let name = format!("{}/{}", parent(level_dir), task);
        Ok(Mask::new(name, study.logits, Some(study.alpha)))
    }

    /// Reads a mask: the study's pickles (detected by content) or our `.safetensors` logits with
    /// their `.json` sidecar (name and α from the sidecar when present).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if crate::checkpoint::looks_like_pickle(path) {
            return Self::load_study(path);
        }
        let logits = crate::checkpoint::read_safetensors(path)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // No sidecar: a bare logits file. A sidecar that is there but broken is an error.
        if !path.with_extension("json").exists() {
            crate::checkpoint::check_finite(path, &logits)?;
            return Ok(Mask::new(stem, in_model_order(logits, &[]), None));
        }
        let side: engine::MaskSidecar = crate::checkpoint::read_sidecar(path)?;
        // The checksum first: a flipped byte is "corrupt", not "non-finite".
        crate::checkpoint::verify_crc32(path, side.logits_crc32)?;
        crate::checkpoint::check_finite(path, &logits)?;
        let logits = in_model_order(logits, &side.tensors);
        Ok(Mask::new(side.name, logits, Some(side.config.alpha)).with_settings(&side.config))
    }

    /// Deterministic 0/1 float masks (`l > 0`), by parameter name.
    pub fn binary(&self) -> Params {
        let mut out = Params::new();
        for (name, l) in self.logits.iter() {
            out.insert(name, l.gt(0.0).to_kind(Kind::Float));
        }
        out
    }

    /// Number of kept scalars (`l > 0`) and of all masked scalars.
    pub fn kept(&self) -> (i64, i64) {
        let kept = self
            .logits
            .iter()
            .map(|(_, l)| l.gt(0.0).sum(Kind::Int64).int64_value(&[]))
            .sum();
        (kept, self.logits.numel())
    }

    /// Refuses a mask that is not of `params`' model: every masked tensor must exist there with
    /// the same shape. The error names the tensors that differ (the first few).
    pub fn check_fits(&self, params: &Params) -> Result<()> {
        if self.logits.is_empty() {
            // Applying it would silently report the unmasked model.
            return Err(crate::Error::MaskMismatch {
                mask: self.name.clone(),
                message: "it holds no tensors".into(),
            });
        }
        let problems: Vec<String> = self
            .logits
            .iter()
            .filter_map(|(name, l)| match params.get(name) {
                Err(_) => Some(format!("`{name}` is not a tensor of the model")),
                Ok(w) if w.size() != l.size() => Some(format!(
                    "`{name}` is {:?} in the mask but {:?} in the model",
                    l.size(),
                    w.size()
                )),
                Ok(_) => None,
            })
            .collect();
        match problems.len() {
            0 => Ok(()),
            n => Err(crate::Error::MaskMismatch {
                mask: self.name.clone(),
                message: format!(
                    "{n} of its {} tensors differ from the model's: {}{}",
                    self.logits.len(),
                    problems
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; "),
                    if n > 3 { "; …" } else { "" }
                ),
            }),
        }
    }

    /// `params` with every masked tensor multiplied by its binary mask (or `1 − mask` when
    /// `invert`); tensors without a mask are shared unchanged. A mask of another model (names
    /// or shapes that differ) is refused ([`Mask::check_fits`]).
    pub fn apply(&self, params: &Params, invert: bool) -> Result<Params> {
        self.check_fits(params)?;
        let binary = self.binary();
        let mut out = Params::new();
        for (name, w) in params.iter() {
            let t = match binary.contains(name) {
                true => {
                    let b = binary.get(name)?.to_device(w.device());
                    let b = if invert { 1.0 - b } else { b };
                    w * b
                }
                false => w.shallow_clone(),
            };
            out.insert(name, t);
        }
        Ok(out)
    }
}

/// `logits` in the order `order` gives (the model's, recorded in the sidecar), else by name
/// with numbers compared as numbers (`vision.net.2` before `vision.net.10`): a safetensors file
/// does not keep the order, and per-tensor labels (V1, V2, …) follow it.
fn in_model_order(logits: Params, order: &[String]) -> Params {
    let mut names: Vec<String> = logits.names().to_vec();
    let known = order.len() == names.len() && order.iter().all(|n| logits.contains(n));
    match known {
        true => names = order.to_vec(),
        false => names.sort_by_key(|n| natural_key(n)),
    }
    let mut out = Params::new();
    for name in names {
        if let Ok(t) = logits.get(&name) {
            out.insert(name.clone(), t.shallow_clone());
        }
    }
    out
}

/// Sort key that compares runs of digits as numbers.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    name.split('.')
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (String::new(), n),
            Err(_) => (part.to_string(), 0),
        })
        .collect()
}

/// Element-wise AND of several masks' binary forms (scalars kept by all).
pub fn shared_by_all(binaries: &[Params]) -> Result<Params> {
    same_layout(binaries)?;
    let mut out = Params::new();
    if let Some(first) = binaries.first() {
        for (name, t) in first.iter() {
            // A copy: the in-place product must not write into the first mask's tensor.
            let mut acc = t.copy();
            for other in &binaries[1..] {
                acc *= other.get(name)?;
            }
            out.insert(name, acc);
        }
    }
    Ok(out)
}

/// Refuses binary masks of different models: the same tensor names with the same shapes
/// (in any order) — checked before any element-wise op, which would panic inside libtorch.
pub fn same_layout(binaries: &[Params]) -> Result<()> {
    let Some(first) = binaries.first() else {
        return Ok(());
    };
    for (i, other) in binaries.iter().enumerate().skip(1) {
        let mismatch = first
            .iter()
            .find_map(|(name, a)| match other.get(name) {
                Err(_) => Some(format!("`{name}` is missing")),
                Ok(b) if a.size() != b.size() => {
                    Some(format!("`{name}` is {:?} vs {:?}", a.size(), b.size()))
                }
                Ok(_) => None,
            })
            .or_else(|| {
                (first.len() != other.len())
                    .then(|| format!("{} vs {} tensors", first.len(), other.len()))
            });
        if let Some(detail) = mismatch {
            return Err(crate::Error::MaskMismatch {
                mask: format!("#{i}"),
                message: format!("its tensors differ from mask #0's: {detail}"),
            });
        }
    }
    Ok(())
}
