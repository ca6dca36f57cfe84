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

pub mod analysis;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod display;
pub mod error;
pub mod fixtures;
pub mod masking;
pub mod model;
pub mod plot;
pub mod prelude;
pub mod report;
pub mod rng;
pub mod session;
pub mod train;

pub use error::{Error, Result};
