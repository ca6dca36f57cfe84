//! Stage 4 — differentiable binary weight masks (Csordás et al., ICLR 2021).
