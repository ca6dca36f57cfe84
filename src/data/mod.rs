//! Stage 1 — AVR data: I-RAVEN/RAVEN `.npz` problems, the generator, task presets, loaders.
//!
//! Filled by the data issue; the quickstart only needs [`crate::session`].
