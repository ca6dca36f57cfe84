//! Stage 3 — training SCL with milestone checkpoints.
