//! Stage 2 — models as *functional* forward passes over a [`Params`] map, so the masking stage
//! can substitute masked (or K-batched) weights without touching model code. Parameter names
//! are the PyTorch state-dict keys.

pub mod flops;
pub mod fused;
pub mod fused_experts;
pub mod init;
pub mod layers;
pub mod mlp;
pub mod params;
pub mod scl_official;
pub mod scl_seed;
pub mod team;

pub use init::init_params;
pub use layers::{in_precision, BnMode, Precision};
pub use params::{check_params, ParamSpec, Params};
pub use scl_official::OfficialSclConfig;
pub use scl_seed::SeedSclConfig;
pub mod scl;

pub use scl::{SclModel, SclVariant};
