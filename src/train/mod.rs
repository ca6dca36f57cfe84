//! Stage 3 — training and evaluating SCL.

pub mod eval;
pub mod trainer;

pub use eval::{evaluate, EvalReport};
pub use trainer::{train, Milestone, TrainConfig, TrainRun};
