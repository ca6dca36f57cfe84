//! Plots drawn with plotters into SVG strings and returned as [`Figure`]s, all styled alike.

mod style;
pub mod heatmap;
pub mod lines;

pub use heatmap::sharing_heatmap;
pub use lines::{line_plot, Line};
pub use style::{Style, PALETTE};

use crate::display::Figure;
