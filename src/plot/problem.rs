//! A Raven's matrix as a picture: the 3×3 context with the blank, the 8 candidates below, the
//! answer framed in red (and the solver's guess in blue when it differs). Inline in evcxr as SVG
//! (the panels embedded as one PNG), savable as SVG or PNG.

use std::path::Path;

use crate::data::npz::{crc32, AvrProblem};
use crate::display::{escape_html, Figure};
use crate::{Error, Result};

const GAP: usize = 8;
const SEPARATOR: usize = 28;

/// Pixel layout of the grid for panels of side `s`.
struct Grid {
    s: usize,
    width: usize,
    height: usize,
}

impl Grid {
    fn new(s: usize) -> Self {
        let cell = s + GAP;
        Grid {
            s,
            width: 4 * cell + GAP,
            height: 5 * cell + GAP + SEPARATOR,
        }
    }
    /// Top-left corner of panel `i` (0–7 context, 8 the blank, 9–16 candidates).
    fn corner(&self, i: usize) -> (usize, usize) {
        let cell = self.s + GAP;
        if i < 9 {
            let x0 = (self.width - (3 * cell - GAP)) / 2;
            (x0 + (i % 3) * cell, GAP + (i / 3) * cell)
        } else {
            let c = i - 9;
            (
                GAP + (c % 4) * cell,
                3 * cell + GAP + SEPARATOR + (c / 4) * cell,
            )
        }
    }
}

/// The grid as one grey image `(width, height, pixels)`: white background, blank panel light grey.
pub fn problem_canvas(problem: &AvrProblem) -> (usize, usize, Vec<u8>) {
    let g = Grid::new(problem.side);
    let mut px = vec![255u8; g.width * g.height];
    for i in 0..17 {
        let (x0, y0) = g.corner(i);
        for y in 0..g.s {
            let row = &mut px[(y0 + y) * g.width + x0..(y0 + y) * g.width + x0 + g.s];
            match i {
                8 => row.fill(235),
                _ => row.copy_from_slice(
                    &problem.panel(if i < 8 { i } else { i - 1 })[y * g.s..(y + 1) * g.s],
                ),
            }
        }
    }
    (g.width, g.height, px)
}

/// The problem as a figure with the answer framed.
pub fn problem_figure(problem: &AvrProblem, title: &str) -> Figure {
    let g = Grid::new(problem.side);
    let (w, h, px) = problem_canvas(problem);
    let title_h = 30;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" viewBox="0 0 {w} {}"><rect width="100%" height="100%" fill="white"/><text x="{}" y="20" font-family="sans-serif" font-size="16" text-anchor="middle">{}</text><g transform="translate(0,{title_h})"><image width="{w}" height="{h}" href="data:image/png;base64,{}"/>"#,
        h + title_h,
        h + title_h,
        w / 2,
        escape_html(title),
        base64(&png_gray(w, h, &px))
    );
    let (bx, by) = g.corner(8);
    svg += &format!(
        r#"<text x="{}" y="{}" font-family="sans-serif" font-size="48" fill="gray" text-anchor="middle" dominant-baseline="middle">?</text>"#,
        bx + g.s / 2,
        by + g.s / 2
    );
    let frame = |i: usize, color: &str, inset: usize| {
        let (x, y) = g.corner(9 + i);
        format!(
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{color}" stroke-width="3"/>"#,
            x - 3 + inset,
            y - 3 + inset,
            g.s + 6 - 2 * inset,
            g.s + 6 - 2 * inset
        )
    };
    if problem.predict != problem.target && (0..8).contains(&problem.predict) {
        svg += &frame(problem.predict as usize, "#1f77b4", 4);
    }
    svg += &frame(problem.target as usize, "#d62728", 0);
    for i in 0..8 {
        let (x, y) = g.corner(9 + i);
        svg += &format!(
            r#"<text x="{}" y="{}" font-family="sans-serif" font-size="12" fill="black">{}</text>"#,
            x + 2,
            y - 2,
            i
        );
    }
    svg += "</g></svg>";
    Figure::new(title, svg)
}

/// Writes the problem grid as a PNG (no frames: the pixels only).
pub fn save_problem_png(problem: &AvrProblem, path: impl AsRef<Path>) -> Result<()> {
    let (w, h, px) = problem_canvas(problem);
    crate::checkpoint::write_atomic(path.as_ref(), &png_gray(w, h, &px))
        .map_err(|e| Error::Plot(e.to_string()))
}

/// An 8-bit greyscale PNG with stored (uncompressed) deflate blocks: tiny code, valid everywhere.
pub fn png_gray(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    png_encode(width, height, 1, pixels)
}

/// An 8-bit RGB PNG (`pixels` = `width·height·3` bytes).
pub fn png_rgb(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    png_encode(width, height, 3, pixels)
}

fn png_encode(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity((width * channels + 1) * height);
    for row in pixels.chunks(width * channels) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push((i + 1 == blocks.len()) as u8);
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, if channels == 3 { 2 } else { 0 }, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    png
}

pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            out.push(if k <= c.len() {
                A[(n >> (18 - 6 * k)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}
