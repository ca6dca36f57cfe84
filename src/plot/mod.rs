//! Plots drawn with plotters into SVG strings and returned as [`Figure`]s, all styled alike.

pub mod bars;
pub mod curves;
pub mod development;
pub mod graph;
pub mod heatmap;
pub mod lines;
pub mod problem;
mod style;
pub mod usage;

pub use bars::{log_bar_chart, mask_probability_histogram, spatial_distribution};
pub use curves::{plot_sharing_matrix, readable_window, training_curves};
pub use graph::{cluster_graph, q_over_training, run_graph};
pub use heatmap::{sharing_chance_heatmap, sharing_heatmap};
pub use lines::{line_plot, line_plot_with_bands, Band, Line};
pub use problem::{problem_figure, save_problem_png};
pub use style::{Style, PALETTE};
pub use usage::weight_usage;

use crate::display::Figure;
