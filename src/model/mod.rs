//! Stage 2 — models: the two SCL variants as functional models (parameters by PyTorch name).
