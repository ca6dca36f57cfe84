//! Inline display types for evcxr notebooks: [`Figure`] (SVG) and [`Table`] (HTML).
//!
//! evcxr calls an inherent `evcxr_display` method on a cell's last expression; the method
//! prints one `EVCXR_BEGIN_CONTENT <mime>` … `EVCXR_END_CONTENT` block. evcxr keeps only
//! the last block per MIME type per cell, so each type prints exactly one block.
//! Every plot and table of the library returns one of these types.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;

use crate::files::write_atomic;
use crate::{Error, Result};

/// An SVG figure drawn with plotters.
///
/// Every figure scales down to the width of the page or notebook cell showing it: its root
/// element has a `viewBox` and `style="max-width:100%;height:auto"` (added by [`Figure::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The complete `<svg …>…</svg>` document.
    pub svg: String,
    /// Title, used for file names and checks.
    pub title: String,
}

/// CSS that lets an SVG shrink to its container, keeping its aspect ratio (through `viewBox`).
const RESPONSIVE: &str = "max-width:100%;height:auto";
/// Markers around each part of a [`Figure::side_by_side`] document.
const PART_BEGIN: &str = "<!--avr-part-->";
const PART_END: &str = "<!--/avr-part-->";

impl Figure {
    /// Wraps an SVG document, giving its root a `viewBox` (from `width`/`height` when it has
    /// none) and the responsive style, so that it never overflows the cell showing it.
    pub fn new(title: impl Into<String>, svg: String) -> Self {
        Figure {
            svg: responsive(svg),
            title: title.into(),
        }
    }

    /// Several figures next to each other. The SVG document (for [`Figure::save_svg`] and
    /// `image/svg+xml`) holds them in one row and scales down as a whole; in HTML
    /// ([`Figure::to_html`], and the notebook display) they are separate SVGs in a wrapping
    /// flex row, each at most as wide as the cell, so nothing is cut off. Side-by-side figures
    /// given here are flattened into their parts.
    pub fn side_by_side(title: impl Into<String>, figures: &[Figure]) -> Self {
        let parts: Vec<Part> = figures.iter().flat_map(|f| parts(&f.svg)).collect();
        let (mut width, mut height, mut body) = (0.0f64, 0.0f64, String::new());
        for p in &parts {
            let _ = write!(
                body,
                "{PART_BEGIN}<svg x=\"{width}\" y=\"0\" width=\"{}\" height=\"{}\" viewBox=\"{}\">{}</svg>{PART_END}",
                p.width, p.height, p.view_box, p.content
            );
            width += p.width;
            height = height.max(p.height);
        }
        let svg = format!("<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" xmlns=\"http://www.w3.org/2000/svg\">{body}</svg>");
        Figure::new(title, svg)
    }

    /// Whether this figure was made by [`Figure::side_by_side`].
    fn is_composite(&self) -> bool {
        self.svg.contains(PART_BEGIN)
    }

    /// Writes the SVG document (atomically).
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.svg.as_bytes())
    }

    /// The figure as a self-contained HTML fragment (for reports and notebooks): a `<figure>`
    /// no wider than its container; the parts of a side-by-side figure wrap onto new rows.
    pub fn to_html(&self) -> String {
        if !self.is_composite() {
            return format!(
                "<figure class=\"avr-figure\" style=\"margin:0.5em 0;max-width:100%\">{}</figure>",
                self.svg
            );
        }
        let mut html = String::from(
            "<figure class=\"avr-figure avr-side-by-side\" style=\"margin:0.5em 0;max-width:100%;display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start\">",
        );
        for p in parts(&self.svg) {
            let _ = write!(
                html,
                "<svg width=\"{}\" height=\"{}\" viewBox=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" style=\"{RESPONSIVE};min-width:0;flex:0 1 auto\">{}</svg>",
                p.width, p.height, p.view_box, p.content
            );
        }
        html.push_str("</figure>");
        html
    }

    /// Inline display in evcxr (`image/svg+xml`). A side-by-side figure also gives `text/html`
    /// (its parts in a wrapping row, each shrinking to the cell), which HTML front ends
    /// (JupyterLab, nbconvert, VS Code) prefer; the SVG stays as the fallback for the others.
    pub fn evcxr_display(&self) {
        if self.is_composite() {
            println!(
                "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
                self.to_html()
            );
        }
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.svg
        );
    }
}

/// One figure of a side-by-side document: its size, `viewBox` and content.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    width: f64,
    height: f64,
    view_box: String,
    content: String,
}

/// The root `<svg …>` start tag of a document (empty when there is none).
fn root_tag(svg: &str) -> &str {
    let Some(start) = svg.find("<svg") else {
        return "";
    };
    let end = svg[start..].find('>').map_or(svg.len(), |i| start + i + 1);
    &svg[start..end]
}

/// The value of attribute `name` in a start tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    tag.find(&key)
        .and_then(|i| tag[i + key.len()..].split('"').next())
}

/// Width and height attributes of an `<svg>` root (0 when absent).
fn svg_size(svg: &str) -> (f64, f64) {
    let tag = root_tag(svg);
    let num = |name| attr(tag, name).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (num("width"), num("height"))
}

/// The parts of a document: those of a side-by-side figure, or the document itself.
fn parts(svg: &str) -> Vec<Part> {
    if !svg.contains(PART_BEGIN) {
        let (width, height) = svg_size(svg);
        let view_box = attr(root_tag(svg), "viewBox")
            .map_or_else(|| format!("0 0 {width} {height}"), str::to_string);
        return vec![Part {
            width,
            height,
            view_box,
            content: strip_svg_root(svg).to_string(),
        }];
    }
    svg.split(PART_BEGIN)
        .skip(1)
        .filter_map(|chunk| chunk.split(PART_END).next())
        .flat_map(parts)
        .collect()
}

/// `svg` with a `viewBox` and the responsive style on its root element (unchanged if present).
fn responsive(mut svg: String) -> String {
    let tag = root_tag(&svg).to_string();
    if tag.is_empty() {
        return svg;
    }
    let start = svg.find("<svg").unwrap_or(0);
    let mut extra = String::new();
    if attr(&tag, "viewBox").is_none() {
        let (w, h) = svg_size(&svg);
        if w > 0.0 && h > 0.0 {
            let _ = write!(extra, " viewBox=\"0 0 {w} {h}\"");
        }
    }
    match attr(&tag, "style") {
        Some(style) if style.contains("max-width") => {}
        Some(style) => {
            let old = format!(" style=\"{style}\"");
            let new = format!(" style=\"{RESPONSIVE};{style}\"");
            let fixed = tag.replacen(&old, &new, 1);
            svg.replace_range(start..start + tag.len(), &fixed);
        }
        None => {
            let _ = write!(extra, " style=\"{RESPONSIVE}\"");
        }
    }
    if !extra.is_empty() {
        let tag = root_tag(&svg);
        let close = if tag.ends_with("/>") { 2 } else { 1 };
        svg.insert_str(start + tag.len() - close, &extra);
    }
    svg
}

/// The content of an SVG document without its `<svg …>` root element.
pub(crate) fn strip_svg_root(svg: &str) -> &str {
    let start = svg.find("<svg").unwrap_or(0);
    let start = svg[start..].find('>').map_or(0, |i| start + i + 1);
    let end = svg.rfind("</svg>").unwrap_or(svg.len());
    &svg[start.min(end)..end]
}

/// Sentences computed from results (a finding and its test), shown in a notebook as paragraphs
/// (blank lines separate them) rather than as a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Text {
    /// The paragraphs as HTML.
    pub fn to_html(&self) -> String {
        self.0
            .split("\n\n")
            .map(|p| format!("<p>{}</p>", escape_html(p.trim())))
            .collect()
    }

    /// Inline display in evcxr (`text/html`).
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
            self.to_html()
        );
    }

    /// The paragraphs of `self` followed by those of `other`.
    pub fn and(self, other: Text) -> Text {
        Text(format!("{}\n\n{}", self.0, other.0))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A polars DataFrame with an HTML rendering.
#[derive(Debug, Clone)]
pub struct Table {
    /// The data shown.
    pub df: DataFrame,
    /// Optional caption shown above the table.
    pub caption: Option<String>,
    /// Floats are printed with this many decimals.
    pub float_decimals: usize,
}

/// Rows a table shows inline: a longer one shows its first and last half of these, with a row
/// saying how many are left out (a 35,000-step training log would otherwise put megabytes of
/// HTML into the notebook). `to_markdown` and the DataFrame keep every row.
pub const HTML_ROWS: usize = 100;

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

    /// The table as an HTML `<table>` (at most [`HTML_ROWS`] rows shown).
    pub fn to_html(&self) -> Result<String> {
        self.html_with(HTML_ROWS)
    }

    /// The table as an HTML `<table>` with every row (for standalone reports).
    pub fn to_html_all(&self) -> Result<String> {
        self.html_with(usize::MAX)
    }

    /// The HTML table, its middle rows left out beyond `max_rows`.
    fn html_with(&self, max_rows: usize) -> Result<String> {
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
        let (height, half) = (self.df.height(), max_rows / 2);
        for row in 0..height {
            if height > max_rows && row == half {
                let _ = write!(
                    html,
                    "<tr><td colspan=\"{}\" style=\"text-align:center\">… {} of {height} rows not shown …</td></tr>",
                    columns.len(),
                    height - 2 * half
                );
            }
            if height > max_rows && (half..height - half).contains(&row) {
                continue;
            }
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

    /// The table as GitHub markdown (caption in italics above; `|` in cells escaped).
    pub fn to_markdown(&self) -> Result<String> {
        let mut md = String::new();
        if let Some(caption) = &self.caption {
            let _ = writeln!(md, "*{caption}*\n");
        }
        let names: Vec<String> = self
            .df
            .get_column_names()
            .iter()
            .map(|n| n.replace('|', "\\|"))
            .collect();
        let _ = writeln!(md, "| {} |", names.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(names.len()));
        for row in 0..self.df.height() {
            let cells = self
                .df
                .columns()
                .iter()
                .map(|c| {
                    Ok(self
                        .cell_text(c.get(row).map_err(Error::from)?)
                        .replace('|', "\\|"))
                })
                .collect::<Result<Vec<_>>>()?;
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        Ok(md)
    }

    /// Inline display in evcxr (`text/html`).
    pub fn evcxr_display(&self) {
        match self.to_html() {
            Ok(html) => println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT"),
            Err(e) => println!("{}\n(table could not be rendered as HTML: {e})", self.df),
        }
    }
}

/// Prints `rows` as a two-column HTML table (name, value) for evcxr: the inline display of
/// summaries such as `Study` and `Checkpoint`.
pub fn display_key_values<K: AsRef<str>>(rows: &[(K, String)]) {
    let body: String = rows
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><th style=\"text-align:left\">{}</th><td><code>{}</code></td></tr>",
                escape_html(k.as_ref()),
                escape_html(v)
            )
        })
        .collect();
    println!("EVCXR_BEGIN_CONTENT text/html\n<table>{body}</table>\nEVCXR_END_CONTENT");
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
        assert!(
            both.svg
                .contains("<svg x=\"100\" y=\"0\" width=\"30\" height=\"80\" viewBox=\"0 0 30 80\"><circle/></svg>"),
            "{}",
            both.svg
        );
        assert!(root_tag(&both.svg).contains("viewBox=\"0 0 130 80\""));
        assert!(root_tag(&both.svg).contains("style=\"max-width:100%;height:auto\""));
        // In HTML: two separate, shrinkable SVGs in a wrapping flex row.
        let html = both.to_html();
        assert!(html.contains("display:flex;flex-wrap:wrap"), "{html}");
        assert_eq!(html.matches("<svg").count(), 2, "{html}");
        assert_eq!(html.matches("max-width:100%;height:auto").count(), 2);
        // Nesting flattens: three parts, not a part holding two.
        let c = Figure::new("c", "<svg width=\"10\" height=\"10\"><path/></svg>".into());
        let all = Figure::side_by_side("abc", &[both, c]);
        assert_eq!(all.to_html().matches("<svg").count(), 3);
        assert!(all.svg.starts_with("<svg width=\"140\" height=\"80\""));
    }

    #[test]
    fn every_figure_gets_a_view_box_and_scales_down() {
        let f = Figure::new(
            "f",
            "<svg xmlns=\"x\" width=\"760\" height=\"70\"><rect/></svg>".into(),
        );
        assert_eq!(
            root_tag(&f.svg),
            "<svg xmlns=\"x\" width=\"760\" height=\"70\" viewBox=\"0 0 760 70\" style=\"max-width:100%;height:auto\">"
        );
        // Idempotent, and an existing style is kept.
        assert_eq!(Figure::new("f", f.svg.clone()).svg, f.svg);
        let g = Figure::new(
            "g",
            "<svg width=\"5\" height=\"5\" viewBox=\"0 0 5 5\" style=\"color:red\"/>".into(),
        );
        assert_eq!(
            g.svg,
            "<svg width=\"5\" height=\"5\" viewBox=\"0 0 5 5\" style=\"max-width:100%;height:auto;color:red\"/>"
        );
        assert!(f.to_html().starts_with(
            "<figure class=\"avr-figure\" style=\"margin:0.5em 0;max-width:100%\"><svg"
        ));
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
