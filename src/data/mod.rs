//! Stage 1 — AVR data: I-RAVEN/RAVEN `.npz` problems, folders of them, and batches as tensors.

pub mod dataset;
pub mod deflate;
pub mod digits;
pub mod generate;
pub mod loader;
pub mod npz;
pub mod render_cache;
pub mod shape;

pub use dataset::{AvrDataset, Batch, Split};
pub use npz::{inspect, AvrProblem, NpzSummary, Packing, CONFIGURATIONS};
pub use shape::Shape;
