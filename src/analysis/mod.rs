//! Stage 5 — module analysis: sparsity, dispersity, sharing, graph modularity.
