//! Stage 4 — binary weight masks (Csordás et al., "Are Neural Nets Modular?", ICLR 2021).
//!
//! A mask holds one real-valued logit per masked scalar, stored apart from the frozen weights.
//! The deterministic binary mask is `l > 0` (the mode of Bernoulli(σ(l))); a masked parameter is
//! `w · b`, an inverted mask uses `1 − b`. BatchNorm running statistics are never masked.

use std::path::Path;

use tch::Kind;

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
}

impl Mask {
    /// Wraps logits.
    pub fn new(name: impl Into<String>, logits: Params, alpha: Option<f64>) -> Self {
        Mask {
            name: name.into(),
            logits,
            alpha,
        }
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
        match crate::checkpoint::read_sidecar::<engine::MaskSidecar>(path) {
            Ok(side) => Ok(Mask::new(side.name, logits, Some(side.config.alpha))),
            Err(_) => Ok(Mask::new(stem, logits, None)),
        }
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

    /// `params` with every masked tensor multiplied by its binary mask (or `1 − mask` when
    /// `invert`); tensors without a mask are shared unchanged.
    pub fn apply(&self, params: &Params, invert: bool) -> Result<Params> {
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

/// Element-wise AND of several masks' binary forms (scalars kept by all).
pub fn shared_by_all(binaries: &[Params]) -> Result<Params> {
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
