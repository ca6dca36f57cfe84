//! The shared look of every figure: size, fonts, palette.

use plotters::style::RGBColor;
use serde::{Deserialize, Serialize};

/// Colour-blind-safe categorical palette (Okabe–Ito), used in order for series.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Figure size and font sizes shared by all plots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Style {
    /// Width in pixels (default 640).
    pub width: u32,
    /// Height in pixels (default 400).
    pub height: u32,
    /// Title font size (default 20).
    pub title_size: u32,
    /// Axis label font size (default 14).
    pub label_size: u32,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            width: 640,
            height: 400,
            title_size: 20,
            label_size: 14,
        }
    }
}

impl Style {
    /// The colour of the `i`-th series.
    pub fn color(i: usize) -> RGBColor {
        PALETTE[i % PALETTE.len()]
    }
}
