//! Everything a notebook needs: `use avr_modularity::prelude::*;`.

pub use crate::analysis::development::Development;
pub use crate::analysis::graph::analyse;
pub use crate::analysis::masks::{mask_stats, stats_table, MaskStats, Overlap, SharingMatrix};
pub use crate::analysis::{
    graph_modularity, sharing_matrix, ModularityConfig, ModularityReport, WeightGraph,
};
pub use crate::data::dataset::BatchOptions;
pub use crate::data::generate::{
    generate_dataset, generate_problem, CandidateMode, ConfigSpec, GeneratedProblem,
    GeneratorConfig, Preset,
};
pub use crate::data::loader::{EpochOrder, Loader, LoaderConfig};
pub use crate::data::{AvrDataset, AvrProblem, Split};
pub use crate::display::{Figure, Table};
pub use crate::fixtures::{fixtures_dir, require_fixtures, study_masks, STUDY_SHAPES};
pub use crate::masking::engine::MaskSidecar;
pub use crate::masking::engine::{
    alpha_sweep, train_mask, AlphaSweep, MaskFilter, MaskRun, MaskTrainConfig,
};
pub use crate::masking::toy::{run_toy, ToyConfig, ToyReport, ToyTask};
pub use crate::masking::Mask;
pub use crate::model::{BnMode, Params, SclModel};
pub use crate::model::{OfficialSclConfig, SclVariant, SeedSclConfig};
pub use crate::plot::sharing_heatmap;
pub use crate::plot::{line_plot, Line};
pub use crate::plot::{
    log_bar_chart, mask_probability_histogram, spatial_distribution, weight_usage,
};
pub use crate::plot::{problem_figure, save_problem_png};
pub use crate::session::{default_device, setup, RunSize, Session};
pub use crate::train::eval::{evaluate, EvalOptions, EvalReport};
pub use crate::train::trainer::load_checkpoint;
pub use crate::train::{train, TrainConfig, TrainRun};
pub use crate::{Error, Result};
pub use polars::prelude::{df, DataFrame, NamedFrom, Series};
pub use tch::{Device, Kind, Tensor};
