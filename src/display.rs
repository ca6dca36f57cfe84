//! Inline display types for evcxr notebooks: [`Figure`] (SVG) and [`Table`] (HTML).
//!
//! evcxr calls an inherent `evcxr_display` method on a cell's last expression; the method
//! prints one `EVCXR_BEGIN_CONTENT <mime>` … `EVCXR_END_CONTENT` block. evcxr keeps only
//! the last block per MIME type per cell, so each type prints exactly one block.
//! Every plot and table of the library returns one of these types.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;

use crate::checkpoint::write_atomic;
use crate::{Error, Result};

/// An SVG figure drawn with plotters.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The complete `<svg …>…</svg>` document.
    pub svg: String,
    /// Title, used for file names and checks.
    pub title: String,
}

impl Figure {
    /// Wraps an SVG document.
    pub fn new(title: impl Into<String>, svg: String) -> Self {
        Figure {
            svg,
            title: title.into(),
        }
    }

    /// Several figures in a row, as one SVG document (evcxr shows one block per MIME type per
    /// cell, so a cell with several plots needs them combined).
    pub fn side_by_side(title: impl Into<String>, figures: &[Figure]) -> Self {
        let (mut width, mut height, mut body) = (0.0f64, 0.0f64, String::new());
        for f in figures {
            let (w, h) = svg_size(&f.svg);
            body.push_str(&format!(
                "<g transform=\"translate({width},0)\">{}</g>",
                strip_svg_root(&f.svg)
            ));
            width += w;
            height = height.max(h);
        }
        let svg = format!("<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" xmlns=\"http://www.w3.org/2000/svg\">{body}</svg>");
        Figure::new(title, svg)
    }

    /// Writes the SVG document (atomically).
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.svg.as_bytes())
    }

    /// The figure as a self-contained HTML fragment (for reports).
    pub fn to_html(&self) -> String {
        format!("<figure>{}</figure>", self.svg)
    }

    /// Inline display in evcxr (`image/svg+xml`).
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.svg
        );
    }
}

/// Width and height attributes of an `<svg>` root (0 when absent).
fn svg_size(svg: &str) -> (f64, f64) {
    let attr = |name: &str| -> f64 {
        let key = format!("{name}=\"");
        svg.find(&key)
            .and_then(|i| svg[i + key.len()..].split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (attr("width"), attr("height"))
}

/// The content of an SVG document without its `<svg …>` root element.
fn strip_svg_root(svg: &str) -> &str {
    let start = svg.find('>').map_or(0, |i| i + 1);
    let end = svg.rfind("</svg>").unwrap_or(svg.len());
    &svg[start..end]
}

/// A polars DataFrame with an HTML rendering.
#[derive(Debug, Clone)]
pub struct Table {
    pub df: DataFrame,
    /// Optional caption shown above the table.
    pub caption: Option<String>,
    /// Floats are printed with this many decimals.
    pub float_decimals: usize,
}

impl Table {
    /// Wraps a DataFrame.
    pub fn new(df: DataFrame) -> Self {
        Table {
            df,
            caption: None,
            float_decimals: 4,
        }
    }

    /// Adds a caption.
    pub fn with_caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }

    /// The text of one cell.
    fn cell_text(&self, value: AnyValue) -> String {
        match value {
            AnyValue::Null => String::new(),
            AnyValue::Float32(v) => format!("{:.*}", self.float_decimals, v),
            AnyValue::Float64(v) => format!("{:.*}", self.float_decimals, v),
            AnyValue::String(s) => s.to_string(),
            other => other.to_string(),
        }
    }

    /// The table as an HTML `<table>`.
    pub fn to_html(&self) -> Result<String> {
        let mut html = String::from("<table class=\"avr-table\">");
        if let Some(caption) = &self.caption {
            let _ = write!(html, "<caption>{}</caption>", escape_html(caption));
        }
        html.push_str("<thead><tr>");
        for name in self.df.get_column_names() {
            let _ = write!(html, "<th>{}</th>", escape_html(name.as_str()));
        }
        html.push_str("</tr></thead><tbody>");
        let columns = self.df.columns();
        for row in 0..self.df.height() {
            html.push_str("<tr>");
            for column in columns {
                let value = column.get(row).map_err(Error::from)?;
                let _ = write!(html, "<td>{}</td>", escape_html(&self.cell_text(value)));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        Ok(html)
    }

    /// Inline display in evcxr (`text/html`).
    pub fn evcxr_display(&self) {
        match self.to_html() {
            Ok(html) => println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT"),
            Err(e) => println!("{}\n(table could not be rendered as HTML: {e})", self.df),
        }
    }
}

/// Escapes text for HTML element content and attributes.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_places_figures_next_to_each_other() {
        let a = Figure::new(
            "a",
            "<svg width=\"100\" height=\"50\" viewBox=\"0 0 100 50\"><rect/></svg>".into(),
        );
        let b = Figure::new(
            "b",
            "<svg width=\"30\" height=\"80\"><circle/></svg>".into(),
        );
        let both = Figure::side_by_side("ab", &[a, b]);
        assert!(
            both.svg.starts_with("<svg width=\"130\" height=\"80\""),
            "{}",
            both.svg
        );
        assert!(both
            .svg
            .contains("<g transform=\"translate(100,0)\"><circle/></g>"));
        assert_eq!(both.svg.matches("<svg").count(), 1);
    }

    #[test]
    fn table_html_has_headers_cells_and_escapes() {
        let df = df!("shape" => ["<circle>", "square"], "kept" => [0.25f64, 0.5]).unwrap();
        let html = Table::new(df).with_caption("kept").to_html().unwrap();
        assert!(html.contains("<th>shape</th><th>kept</th>"), "{html}");
        assert!(
            html.contains("<td>&lt;circle&gt;</td><td>0.2500</td>"),
            "{html}"
        );
        assert!(html.contains("<caption>kept</caption>"));
        assert_eq!(html.matches("<tr>").count(), 3);
    }
}
