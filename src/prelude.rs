//! Everything a notebook needs: `use avr_modularity::prelude::*;`.

pub use crate::display::{Figure, Table};
pub use crate::plot::{line_plot, Line};
pub use crate::session::{default_device, setup, RunSize, Session};
pub use crate::{Error, Result};
pub use polars::prelude::{df, DataFrame, NamedFrom, Series};
pub use tch::{Device, Kind, Tensor};
