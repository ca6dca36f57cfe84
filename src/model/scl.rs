//! [`SclModel`]: one of the SCL variants together with its parameters.

use tch::{Device, Tensor};

use super::scl_official::{self, OfficialSclConfig};
use super::scl_seed::{self, SeedSclConfig};
use super::{check_params, BnMode, Params};
use crate::data::dataset::BatchOptions;
use crate::{Error, Result};

/// Which SCL architecture, with its full configuration (saved beside our checkpoints, so a
/// non-default architecture rebuilds itself).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "variant", content = "config", rename_all = "snake_case")]
pub enum SclVariant {
    /// lucidrains' SCL as used by the study (loads its checkpoint).
    Seed(SeedSclConfig),
    /// dhh1995/SCL, the default for new training.
    Official(OfficialSclConfig),
}

impl SclVariant {
    /// The official SCL (dhh1995/SCL) at `image_size` px panels (80 is the study run's size).
    pub fn official(image_size: i64) -> Self {
        SclVariant::Official(OfficialSclConfig {
            image_size,
            ..Default::default()
        })
    }

    /// The study's (lucidrains) SCL at `image_size` px panels (its checkpoint: 160).
    pub fn seed(image_size: i64) -> Self {
        SclVariant::Seed(SeedSclConfig {
            image_size,
            ..Default::default()
        })
    }
}

/// An SCL model: architecture + named parameters (weights and BN buffers).
#[derive(Debug, Clone)]
pub struct SclModel {
    /// The architecture.
    pub variant: SclVariant,
    /// Weights and BatchNorm buffers by PyTorch state-dict key, in architecture order.
    pub params: Params,
    /// Feed panels transposed, as the study's loader did (its checkpoint needs it).
    pub transpose_panels: bool,
}

impl SclModel {
    /// A model from its architecture and parameters, checking every tensor's name and shape
    /// against the architecture (`source` names the file in errors). Panels are fed as stored.
    pub fn from_params(variant: SclVariant, params: Params, source: &str) -> Result<Self> {
        match &variant {
            SclVariant::Seed(cfg) => cfg.check(),
            SclVariant::Official(cfg) => cfg.check(),
        }
        .map_err(|e| Error::Architecture(format!("{source}: {e}")))?;
        let model = SclModel {
            variant,
            params: Params::new(),
            transpose_panels: false,
        };
        let specs = model.param_specs();
        check_params(&params, &specs, source)?;
        let mut ordered = Params::new();
        for s in &specs {
            ordered.insert(&s.name, params.get(&s.name)?.shallow_clone());
        }
        Ok(SclModel {
            params: ordered,
            ..model
        })
    }

    /// The same model, fed panels transposed (rows ↔ columns) — what the study's loader did,
    /// so its checkpoint and masks need it.
    pub fn with_transposed_panels(self, transpose: bool) -> Self {
        SclModel {
            transpose_panels: transpose,
            ..self
        }
    }

    /// How problems become this model's input: its panel side and orientation. The model owns
    /// its preprocessing, so no caller sets [`BatchOptions`] by hand.
    pub fn batch_options(&self) -> BatchOptions {
        BatchOptions {
            transpose_panels: self.transpose_panels,
            resize: Some(self.image_size()),
            ..Default::default()
        }
    }

    /// `seed` or `official`.
    pub fn variant_name(&self) -> &'static str {
        match &self.variant {
            SclVariant::Seed(_) => "seed",
            SclVariant::Official(_) => "official",
        }
    }

    /// Panel side the model expects.
    pub fn image_size(&self) -> i64 {
        match &self.variant {
            SclVariant::Seed(c) => c.image_size,
            SclVariant::Official(c) => c.image_size,
        }
    }

    /// Logits with `params` (the model's own, or masked or K-batched ones).
    ///
    /// # Shapes
    /// - `x`: `(B, 16, S, S)` panels in [0, 1] (8 context + 8 candidates, `S` = [`Self::image_size`])
    /// - returns: `(B, 8)`, one score per candidate
    pub fn logits_with(&self, params: &Params, x: &Tensor, bn: BnMode) -> Result<Tensor> {
        let logits = match &self.variant {
            SclVariant::Seed(cfg) => scl_seed::forward(cfg, params, x, bn),
            SclVariant::Official(cfg) => scl_official::forward(cfg, params, x, bn),
        }?;
        // Under bf16 compute precision the last linear layer leaves bf16; the loss is f32.
        Ok(logits.to_kind(tch::Kind::Float))
    }

    /// Logits with the model's own parameters.
    ///
    /// # Shapes
    /// - `x`: `(B, 16, S, S)`; returns `(B, 8)`
    pub fn logits(&self, x: &Tensor, bn: BnMode) -> Result<Tensor> {
        self.logits_with(&self.params, x, bn)
    }

    /// Every parameter and buffer of the architecture.
    pub fn param_specs(&self) -> Vec<super::ParamSpec> {
        match &self.variant {
            SclVariant::Seed(cfg) => cfg.param_specs(),
            SclVariant::Official(cfg) => cfg.param_specs(),
        }
    }

    /// A freshly initialised model (PyTorch defaults), reproducible for `seed`.
    pub fn init(variant: SclVariant, seed: u64, device: Device) -> Self {
        let model = SclModel {
            variant,
            params: Params::new(),
            transpose_panels: false,
        };
        let params = super::init_params(&model.param_specs(), seed, device);
        SclModel { params, ..model }
    }

    /// The trainable tensors, marked as requiring gradients (same storage): what an optimiser
    /// updates.
    pub fn trainable_leaves(&self) -> Result<Vec<Tensor>> {
        self.param_specs()
            .into_iter()
            .filter(|s| s.trainable)
            .map(|s| self.params.get(&s.name).map(|t| t.set_requires_grad(true)))
            .collect()
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> i64 {
        self.param_specs()
            .iter()
            .filter(|s| s.trainable)
            .map(|s| s.shape.iter().product::<i64>())
            .sum()
    }

    /// The device of the parameters (CPU for a model without any).
    pub fn device(&self) -> Device {
        self.params
            .iter()
            .next()
            .map(|(_, t)| t.device())
            .unwrap_or(Device::Cpu)
    }

    /// A copy on `device`.
    pub fn to_device(&self, device: Device) -> SclModel {
        SclModel {
            variant: self.variant.clone(),
            params: self.params.to_device(device),
            transpose_panels: self.transpose_panels,
        }
    }
}
