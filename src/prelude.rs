//! The notebook surface: `use avr_modularity::prelude::*;`. About 25 names, by stage; every
//! internal type stays reachable by its path (`avr_modularity::data::loader::Loader`, …).

// --- set-up and display ------------------------------------------------------------------
/// Inline SVG figures and HTML tables.
pub use crate::display::{Figure, Table, Text};
/// The run: seed, device, size and paths ([`Study::setup`]).
pub use crate::notebook::Study;
/// The library's error and result.
pub use crate::{Error, Result};

// --- data --------------------------------------------------------------------------------
/// Generating I-RAVEN problems.
pub use crate::data::generate::{generate_dataset, GeneratorConfig};
/// Problem folders, one problem, splits and the five shape tasks.
pub use crate::data::{AvrDataset, AvrProblem, Shape, Split};

// --- model and checkpoints ----------------------------------------------------------------
/// A trained model from disk, ours or the study's, with its input spec and accuracy.
pub use crate::checkpoint::Checkpoint;
/// SCL and its architectures (`SclVariant::official(80)`).
pub use crate::model::{SclModel, SclVariant};

// --- training ----------------------------------------------------------------------------
/// Training SCL and evaluating accuracy.
pub use crate::notebook::train_scl;
pub use crate::train::eval::{evaluate, EvalOptions};
pub use crate::train::{TrainConfig, TrainRun};

// --- masks -------------------------------------------------------------------------------
pub use crate::masking::bits::Binarize;
/// Binary weight masks and their training.
pub use crate::masking::engine::{alpha_sweep, MaskRun, MaskTrainConfig};
pub use crate::masking::set::{
    train_mask_for_shape, train_mask_replicates, train_masks, MaskSet, TaskSets,
};
pub use crate::masking::toy::{run_toy, ToyConfig, ToyTask};
pub use crate::masking::{Mask, MixedSettings};

// --- analysis and plots ------------------------------------------------------------------
pub use crate::analysis::ablation::{ablate, ablate_shapes, Ablation, AblationConfig, Ablations};
pub use crate::analysis::chance::{
    decisiveness_table, dispersity_chance, dispersity_table, sharing_chance, ChanceConfig,
};
/// Module measures: statistics, sharing, development, graph modularity.
pub use crate::analysis::development::Development;
pub use crate::analysis::masks::{mask_stats, Overlap};
pub use crate::analysis::replicates::{replicate_test, Interval, Replicates};
/// The toumei graph-modularity experiments on real digits.
pub use crate::analysis::toumei::{run_toumei, Experiment, Goal, Model, ToumeiConfig, WeightLock};
pub use crate::analysis::{graph_modularity, ModularityConfig, WeightGraph};
pub use crate::data::digits::Digits;
/// Figures.
pub use crate::plot::{
    cluster_graph, line_plot, plot_sharing_matrix, problem_figure, q_over_training, run_graph,
    sharing_chance_heatmap, weight_usage, Line,
};
