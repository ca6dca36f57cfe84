//! Stage 5 — module analysis: sparsity, dispersity, sharing between masks, graph modularity.

pub mod ablation;
pub mod chance;
pub mod development;
pub mod graph;
pub mod masks;
pub mod replicates;
pub mod specificity;
pub mod toumei;

pub use chance::{dispersity_chance, sharing_chance, ChanceConfig, ChanceLevel, SharingChance};
pub use graph::{graph_modularity, ModularityConfig, ModularityReport, WeightGraph};
pub use masks::{mask_stats, sharing_matrix, MaskStats, Overlap, SharingMatrix};
