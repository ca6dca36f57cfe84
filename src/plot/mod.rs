//! Plots drawn with plotters into SVG strings and returned as [`Figure`]s, all styled alike.

mod style;
pub mod lines;

pub use lines::{line_plot, Line};
pub use style::{Style, PALETTE};

use crate::display::Figure;
