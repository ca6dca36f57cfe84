//! # avr-modularity
//!
//! Functional modules in Scattering Compositional Learners trained on abstract visual
//! reasoning (I-RAVEN) problems, studied with differentiable binary weight masks
//! (Csordás et al., ICLR 2021) and graph modularity.
//!
//! The crate reads like the study, one folder per stage:
//! [`data`] → [`model`] → [`train`] → [`masking`] → [`analysis`] → [`plot`], with
//! [`checkpoint`] for files on disk and [`display`] for inline notebook output.
//! Notebooks start with `use avr_modularity::prelude::*;`.

#![warn(missing_docs)]

/// Generates `with_<field>(self, value) -> Self` setters for config structs (burn's `Config`
/// derive habit): `with_setters!(Cfg { with_lr => lr: f64 })` gives `cfg.with_lr(1e-2)`.
macro_rules! with_setters {
    ($ty:ident { $($setter:ident => $field:ident : $fty:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("This config with `", stringify!($field), "` set to `value`.")]
                #[must_use]
                pub fn $setter(self, value: $fty) -> Self {
                    $ty { $field: value, ..self }
                }
            )*
        }
    };
}
pub(crate) use with_setters;

pub mod analysis;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod display;
pub mod error;
pub mod files;
pub mod fixtures;
pub mod masking;
pub mod model;
pub mod notebook;
pub mod optim;
pub mod plot;
pub mod prelude;
pub mod report;
pub mod rng;
pub mod session;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};

/// libtorch's Rust bindings at the version the library uses (`avr_modularity::tch::Tensor`):
/// notebooks need no `:dep` of their own that could drift from it.
pub use tch;

/// The DataFrame library behind [`display::Table`] (`avr_modularity::polars::prelude::df`).
pub use polars;
