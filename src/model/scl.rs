//! [`SclModel`]: one of the SCL variants together with its parameters.

use tch::{Device, Tensor};

use super::scl_official::{self, OfficialSclConfig};
use super::scl_seed::{self, SeedSclConfig};
use super::{check_params, BnMode, Params};
use crate::checkpoint::StudyCheckpoint;
use crate::{Error, Result};

/// Which SCL architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum SclVariant {
    /// lucidrains' SCL as used by the study (loads its checkpoint).
    Seed(SeedSclConfig),
    /// dhh1995/SCL, the default for new training.
    Official(OfficialSclConfig),
}

/// An SCL model: architecture + named parameters (weights and BN buffers).
#[derive(Debug, Clone)]
pub struct SclModel {
    pub variant: SclVariant,
    pub params: Params,
}

impl SclModel {
    /// Imports the study's pickled checkpoint into the `seed` variant, checking every key.
    pub fn from_study_checkpoint(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let ckpt = StudyCheckpoint::load(path.as_ref())?;
        let k = &ckpt.kwargs;
        if k.attr_net_hidden_dims.len() != 1 {
            return Err(Error::bad_file(
                path.as_ref(),
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
        check_params(
            &ckpt.params,
            &cfg.param_specs(),
            &path.as_ref().display().to_string(),
        )?;
        Ok(SclModel {
            variant: SclVariant::Seed(cfg),
            params: ckpt.params,
        })
    }

    /// Panel side the model expects.
    pub fn image_size(&self) -> i64 {
        match &self.variant {
            SclVariant::Seed(c) => c.image_size,
            SclVariant::Official(c) => c.image_size,
        }
    }

    /// Logits `(B, 8)` with `params` (the model's own, or masked ones).
    pub fn logits_with(&self, params: &Params, x: &Tensor, bn: BnMode) -> Result<Tensor> {
        match &self.variant {
            SclVariant::Seed(cfg) => scl_seed::forward(cfg, params, x, bn),
            SclVariant::Official(cfg) => scl_official::forward(cfg, params, x, bn),
        }
    }

    /// Logits `(B, 8)` with the model's own parameters.
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
        };
        let params = super::init_params(&model.param_specs(), seed, device);
        SclModel { params, ..model }
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> i64 {
        self.param_specs()
            .iter()
            .filter(|s| s.trainable)
            .map(|s| s.shape.iter().product::<i64>())
            .sum()
    }

    /// The channel graph of the vision conv stack, BatchNorm folded (for graph modularity).
    pub fn vision_graph(&self) -> Result<crate::analysis::WeightGraph> {
        match &self.variant {
            SclVariant::Seed(cfg) => {
                let convs = cfg.conv_channels.len() - 1;
                let layers = (0..convs)
                    .map(|i| {
                        let w = self
                            .params
                            .get(&format!("vision.net.{}.weight", 2 * i))?
                            .shallow_clone();
                        let bn = if i + 1 < convs {
                            let bn = format!("vision.net.{}", 2 * i + 1);
                            Some((
                                self.params.get(&format!("{bn}.weight"))?.shallow_clone(),
                                self.params
                                    .get(&format!("{bn}.running_var"))?
                                    .shallow_clone(),
                            ))
                        } else {
                            None
                        };
                        Ok((w, bn))
                    })
                    .collect::<Result<Vec<_>>>()?;
                crate::analysis::WeightGraph::from_convs(&layers)
            }
            SclVariant::Official(cfg) => {
                let layers = (0..cfg.channels.len())
                    .map(|i| {
                        let bn = format!("visual.bn.{i}");
                        Ok((
                            self.params
                                .get(&format!("visual.conv.{i}.weight"))?
                                .shallow_clone(),
                            Some((
                                self.params.get(&format!("{bn}.weight"))?.shallow_clone(),
                                self.params
                                    .get(&format!("{bn}.running_var"))?
                                    .shallow_clone(),
                            )),
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                crate::analysis::WeightGraph::from_convs(&layers)
            }
        }
    }

    /// A copy on `device`.
    pub fn to_device(&self, device: Device) -> SclModel {
        SclModel {
            variant: self.variant.clone(),
            params: self.params.to_device(device),
        }
    }
}
