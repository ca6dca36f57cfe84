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

/// The widest a figure is drawn (pixels), so that it fits a notebook cell at its natural size
/// even where the notebook shows it as an image that CSS cannot shrink.
pub(crate) const MAX_FIGURE_WIDTH: u32 = 840;

/// Estimated width in pixels of `text` drawn in sans-serif at plotters size `size` (plotters
/// writes `font-size = size / 1.24`). Deliberately generous (0.62 em a character), so that
/// space reserved from it is never too small in a browser.
pub(crate) fn text_width(text: &str, size: u32) -> i32 {
    (text.chars().count() as f64 * f64::from(size) / 1.24 * 0.62).ceil() as i32
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A short line with a dot (line plots).
    Line,
    /// A filled square (bar charts).
    Box,
}

/// A legend drawn in a band of its own below the chart, so that it never covers data.
/// Entries flow left to right and wrap into rows; the legend is centred in the band and
/// written as one `<g class="avr-legend">` group (a framed box, then swatch and label per entry).
#[derive(Debug, Clone)]
pub(crate) struct Legend {
    pub entries: Vec<(String, RGBColor)>,
    pub mark: Mark,
    pub font_size: u32,
}

impl Legend {
    const ROW: i32 = 20;
    const PAD: i32 = 6;
    const SWATCH: i32 = 16;
    const GAP: i32 = 6;
    const SPACING: i32 = 18;
    /// Space between the band's top and the legend box, and below the box.
    const MARGIN: i32 = 8;

    fn entry_width(&self, label: &str) -> i32 {
        Self::SWATCH + Self::GAP + text_width(label, self.font_size) + Self::SPACING
    }

    /// Entry indices per row for a band `width` pixels wide.
    fn rows(&self, width: u32) -> Vec<Vec<usize>> {
        let room = (width as i32 - 2 * (Self::MARGIN + Self::PAD)).max(1);
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut used = 0;
        for (i, (label, _)) in self.entries.iter().enumerate() {
            let w = self.entry_width(label);
            match rows.last_mut() {
                Some(row) if used + w <= room => {
                    row.push(i);
                    used += w;
                }
                _ => {
                    rows.push(vec![i]);
                    used = w;
                }
            }
        }
        rows
    }

    /// Height of the band the legend needs in a figure `width` pixels wide (0 without entries).
    pub fn height(&self, width: u32) -> u32 {
        match self.rows(width).len() {
            0 => 0,
            r => (r as i32 * Self::ROW + 2 * Self::PAD + 2 * Self::MARGIN) as u32,
        }
    }

    /// The legend as SVG elements for a band starting at `top` in a figure `width` wide.
    pub fn svg(&self, width: u32, top: u32) -> String {
        let rows = self.rows(width);
        if rows.is_empty() {
            return String::new();
        }
        let row_width = |row: &Vec<usize>| -> i32 {
            row.iter()
                .map(|&i| self.entry_width(&self.entries[i].0))
                .sum::<i32>()
                - Self::SPACING
        };
        let inner = rows.iter().map(row_width).max().unwrap_or(0);
        let box_w = inner + 2 * Self::PAD;
        let box_h = rows.len() as i32 * Self::ROW + 2 * Self::PAD;
        let x0 = ((width as i32 - box_w) / 2).max(0);
        let y0 = top as i32 + Self::MARGIN;
        let px = f64::from(self.font_size) / 1.24;
        let mut out = format!(
            "<g class=\"avr-legend\">\n<rect x=\"{x0}\" y=\"{y0}\" width=\"{box_w}\" height=\"{box_h}\" fill=\"#FFFFFF\" stroke=\"#000000\"/>\n"
        );
        for (r, row) in rows.iter().enumerate() {
            let cy = y0 + Self::PAD + r as i32 * Self::ROW + Self::ROW / 2;
            let mut x = x0 + Self::PAD;
            for &i in row {
                let (label, c) = &self.entries[i];
                let color = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
                match self.mark {
                    Mark::Line => out += &format!(
                        "<line x1=\"{x}\" y1=\"{cy}\" x2=\"{}\" y2=\"{cy}\" stroke=\"{color}\" stroke-width=\"2\"/>\n<circle cx=\"{}\" cy=\"{cy}\" r=\"3\" fill=\"{color}\"/>\n",
                        x + Self::SWATCH,
                        x + Self::SWATCH / 2
                    ),
                    Mark::Box => out += &format!(
                        "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\" stroke=\"none\"/>\n",
                        x + 2,
                        cy - 6
                    ),
                }
                // The label on its own line, as plotters writes text (tests look for it so).
                out += &format!(
                    "<text x=\"{}\" y=\"{cy}\" dy=\"0.5ex\" text-anchor=\"start\" font-family=\"sans-serif\" font-size=\"{px:.2}\" fill=\"#000000\">\n{}\n</text>\n",
                    x + Self::SWATCH + Self::GAP,
                    crate::display::escape_html(label)
                );
                x += self.entry_width(label);
            }
        }
        out += "</g>\n";
        out
    }
}

/// Inserts SVG `elements` just before the closing `</svg>` of `svg`.
pub(crate) fn append_to_svg(svg: &mut String, elements: &str) {
    let at = svg.rfind("</svg>").unwrap_or(svg.len());
    svg.insert_str(at, elements);
}
