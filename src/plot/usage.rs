//! The weight-usage image of one tensor: which weights task A's mask keeps (red), task B's
//! (green), both (blue), only the control mask (grey), none (black). Conv kernels are shown as
//! `out × (in·kh·kw)` matrices. Scaled up so that small tensors stay visible.

use tch::Kind;

use super::problem::{base64, png_rgb};
use super::style::MAX_FIGURE_WIDTH;
use crate::display::{escape_html, Figure};
use crate::masking::Mask;
use crate::{Error, Result};

const RED: [u8; 3] = [214, 39, 40];
const GREEN: [u8; 3] = [44, 160, 44];
const BLUE: [u8; 3] = [31, 119, 180];
const GREY: [u8; 3] = [150, 150, 150];
const BLACK: [u8; 3] = [0, 0, 0];

fn kept(mask: &Mask, tensor: &str) -> Result<Vec<bool>> {
    let l = mask.logits.get(tensor).map_err(|_| Error::MaskMismatch {
        mask: mask.name.clone(),
        message: format!("it has no tensor '{tensor}'"),
    })?;
    Ok(
        Vec::<u8>::try_from(l.gt(0.0).to_kind(Kind::Uint8).flatten(0, -1))
            .map_err(Error::from)?
            .into_iter()
            .map(|v| v > 0)
            .collect(),
    )
}

/// The usage image of `tensor` for masks `a` and `b` (and optionally a control mask).
pub fn weight_usage(a: &Mask, b: &Mask, control: Option<&Mask>, tensor: &str) -> Result<Figure> {
    let shape = a
        .logits
        .get(tensor)
        .map_err(|_| Error::MaskMismatch {
            mask: a.name.clone(),
            message: format!("it has no tensor '{tensor}'"),
        })?
        .size();
    let rows = shape.first().copied().unwrap_or(1).max(1) as usize;
    let cols = (shape.iter().product::<i64>().max(1) as usize) / rows;
    let (ka, kb) = (kept(a, tensor)?, kept(b, tensor)?);
    let kc = control.map(|c| kept(c, tensor)).transpose()?;
    let sizes = [Some(ka.len()), Some(kb.len()), kc.as_ref().map(Vec::len)];
    if let Some(n) = sizes.into_iter().flatten().find(|&n| n != rows * cols) {
        return Err(Error::MaskMismatch {
            mask: format!("{} / {}", a.name, b.name),
            message: format!(
                "tensor '{tensor}' holds {n} weights in one mask, {} in another",
                rows * cols
            ),
        });
    }
    let scale = (600 / cols.max(rows)).clamp(1, 16);
    let (w, h) = (cols * scale, rows * scale);
    let mut px = vec![0u8; w * h * 3];
    for i in 0..rows * cols {
        let color = match (ka[i], kb[i]) {
            (true, true) => BLUE,
            (true, false) => RED,
            (false, true) => GREEN,
            _ if kc.as_ref().is_some_and(|c| c[i]) => GREY,
            _ => BLACK,
        };
        let (r, c) = (i / cols, i % cols);
        for y in r * scale..(r + 1) * scale {
            for x in c * scale..(c + 1) * scale {
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&color);
            }
        }
    }
    // Shown at most MAX_FIGURE_WIDTH wide (the PNG keeps every weight; the viewer scales it), so
    // that the figure fits a notebook cell even where it is shown as an image.
    let (dw, dh) = if w > MAX_FIGURE_WIDTH as usize {
        let dw = MAX_FIGURE_WIDTH as usize;
        (dw, (h * dw).div_ceil(w).max(1))
    } else {
        (w, h)
    };
    // Crisp pixels when enlarging; when shrinking, smooth (no weight silently dropped).
    let pixelated = if dw >= w {
        r#" style="image-rendering:pixelated""#
    } else {
        ""
    };
    let title = format!("weight usage of {tensor}: {} vs {}", a.name, b.name);
    let entries = [
        ("only ".to_string() + &a.name, RED),
        ("only ".to_string() + &b.name, GREEN),
        ("both".to_string(), BLUE),
        ("control only".to_string(), GREY),
        ("unused".to_string(), BLACK),
    ];
    // Entries side by side below the image, each as wide as its label needs.
    let (mut legend, mut x) = (String::new(), 10usize);
    for (label, c) in &entries {
        legend += &format!(
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="rgb({},{},{})"/><text x="{}" y="{}" font-family="sans-serif" font-size="12">{}</text>"#,
            dh + 48,
            c[0],
            c[1],
            c[2],
            x + 16,
            dh + 58,
            escape_html(label)
        );
        x += 16 + (label.chars().count() as f64 * 12.0 * 0.62).ceil() as usize + 20;
    }
    let (width, height) = (dw.max(760).max(x), dh + 70);
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-family="sans-serif" font-size="15">{}</text><image x="0" y="30" width="{dw}" height="{dh}" preserveAspectRatio="none"{pixelated} href="data:image/png;base64,{}"/>{legend}</svg>"#,
        escape_html(&title),
        base64(&png_rgb(w, h, &px))
    );
    Ok(Figure::new(title, svg))
}
