//! Stage 3 — training and evaluating SCL.

pub mod eval;

pub use eval::{evaluate, EvalReport};
