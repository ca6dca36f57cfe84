//! Rendering at 160×160 like the originals (§2.10): per entity an ink layer (fill = 255 − grey,
//! outline 255 in a 3-px band), rotated about the entity centre with bilinear interpolation,
//! composited so that later entities replace earlier ones; the image is `255 − ink`.
//!
//! Entities are rasterised into a small patch around their centre, and patches are cached per
//! problem: candidates and columns share most entities, so most are drawn once.

use std::collections::HashMap;

use super::grammar::{ConfigSpec, Entity, Panel, ANGLE_VALUES, COLOR_VALUES};

/// Panel side in pixels.
pub const SIDE: usize = 160;

/// An entity's ink, `side × side` pixels with its top-left corner at `(x0, y0)`.
#[derive(Debug, Clone)]
struct Patch {
    x0: i32,
    y0: i32,
    side: i32,
    ink: Vec<u8>,
}

/// Draws panels of one configuration.
pub struct Renderer<'a> {
    config: &'a ConfigSpec,
    sizes: &'a [f64],
}

/// What an entity's ink depends on: slot geometry, shape, size value, colour and angle.
type PatchKey = ([u64; 4], i32, u64, i32, i32);

/// Entity patches are pure functions of [`PatchKey`]; caching them per thread across problems
/// makes most entities free (a dataset has a few thousand distinct ones). Bounded by clearing.
const PATCH_CACHE_LIMIT: usize = 20_000;

thread_local! {
    static PATCHES: std::cell::RefCell<HashMap<PatchKey, std::rc::Rc<Patch>>> = std::cell::RefCell::new(HashMap::new());
}

fn cached_patch(slot: [f64; 4], e: &Entity, sizes: &[f64]) -> std::rc::Rc<Patch> {
    let key: PatchKey = (
        slot.map(f64::to_bits),
        e.ty,
        sizes[e.size as usize].to_bits(),
        e.color,
        e.angle,
    );
    PATCHES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(p) = cache.get(&key) {
            return p.clone();
        }
        if cache.len() >= PATCH_CACHE_LIMIT {
            cache.clear();
        }
        let p = std::rc::Rc::new(entity_patch(slot, e, sizes));
        cache.insert(key, p.clone());
        p
    })
}

impl<'a> Renderer<'a> {
    /// A renderer for panels of `config`, with `sizes` the preset's size value per level (the
    /// scale of the slot radius).
    pub fn new(config: &'a ConfigSpec, sizes: &'a [f64]) -> Self {
        Renderer { config, sizes }
    }

    /// Renders `panel` into `out` (`160 × 160`, row-major).
    pub fn render(&mut self, panel: &Panel, out: &mut [u8]) {
        let mut layer = [0u8; SIDE * SIDE];
        for (comp, layout) in panel.iter().enumerate() {
            for e in &layout.entities {
                let patch = cached_patch(
                    self.config.layouts[comp].slots[e.slot as usize],
                    e,
                    self.sizes,
                );
                composite(&mut layer, &patch);
            }
        }
        match self.config.structure {
            "Left_Right" => (0..SIDE).for_each(|y| layer[y * SIDE + 80] = 255),
            "Up_Down" => layer[80 * SIDE..81 * SIDE].fill(255),
            _ => {}
        }
        for (o, l) in out.iter_mut().zip(layer.iter()) {
            *o = 255 - l;
        }
    }
}

/// The originals' XML `mask`: run-length encoding (1-based starts, row-major) of the pixels where
/// the entity, drawn alone in black, is exactly 255 ink after rotation.
pub fn silhouette_rle(slot: [f64; 4], e: &Entity, sizes: &[f64]) -> String {
    let patch = entity_patch(slot, &Entity { color: 9, ..*e }, sizes);
    let mut on = vec![false; SIDE * SIDE];
    for j in 0..patch.side {
        for i in 0..patch.side {
            let (x, y) = (patch.x0 + i, patch.y0 + j);
            if patch.ink[(j * patch.side + i) as usize] == 255
                && (0..SIDE as i32).contains(&x)
                && (0..SIDE as i32).contains(&y)
            {
                on[y as usize * SIDE + x as usize] = true;
            }
        }
    }
    let mut runs = Vec::new();
    let mut i = 0;
    while i < on.len() {
        if on[i] {
            let start = i;
            while i < on.len() && on[i] {
                i += 1;
            }
            runs.push(format!("{},{}", start + 1, i - start));
        } else {
            i += 1;
        }
    }
    format!("[{}]", runs.join(","))
}

/// The originals' XML `real_bbox` `[y_c, x_c, h, w]` (4 decimals): rotated integer vertices for
/// polygons, the untruncated radius for circles, plus the outline's 2·1.5 px.
pub fn real_bbox(slot: [f64; 4], e: &Entity, sizes: &[f64]) -> [f64; 4] {
    let side = SIDE as f64;
    let (cx, cy) = (
        (slot[1] * side) as i32 as f64,
        (slot[0] * side) as i32 as f64,
    );
    let unit = slot[2].min(slot[3]) * side / 2.0;
    let delta = 2.0 * 1.5 / side;
    let round4 = |v: f64| (v * 1e4).round_ties_even() / 1e4;
    let (y0, y1, x0, x1) = match shape_of(e, unit, sizes[e.size as usize]) {
        Shape::Circle(_) => {
            let r = unit * sizes[e.size as usize];
            (cy - r, cy + r, cx - r, cx + r)
        }
        Shape::Polygon(pts) => {
            let t = ANGLE_VALUES[e.angle as usize].to_radians();
            let (a, b) = (t.cos(), t.sin());
            let rotated: Vec<(f64, f64)> = pts
                .iter()
                .map(|&(x, y)| (cx + a * x + b * y, cy - b * x + a * y))
                .collect();
            let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
                rotated.iter().map(pick).fold(init, f)
            };
            (
                fold(f64::min, f64::MAX, |p| p.1),
                fold(f64::max, f64::MIN, |p| p.1),
                fold(f64::min, f64::MAX, |p| p.0),
                fold(f64::max, f64::MIN, |p| p.0),
            )
        }
    };
    [
        round4((y0 + y1) / 2.0 / side),
        round4((x0 + x1) / 2.0 / side),
        round4((y1 - y0) / side + delta),
        round4((x1 - x0) / side + delta),
    ]
}

fn composite(layer: &mut [u8], p: &Patch) {
    for j in 0..p.side {
        let y = p.y0 + j;
        if !(0..SIDE as i32).contains(&y) {
            continue;
        }
        for i in 0..p.side {
            let x = p.x0 + i;
            let v = p.ink[(j * p.side + i) as usize];
            if v > 0 && (0..SIDE as i32).contains(&x) {
                layer[y as usize * SIDE + x as usize] = v;
            }
        }
    }
}

/// The outline of a shape relative to its centre.
enum Shape {
    Polygon(Vec<(f64, f64)>),
    Circle(f64),
}

fn shape_of(e: &Entity, unit: f64, size: f64) -> Shape {
    let dl = (unit * size) as i32;
    let (s3, half) = ((dl as f64 * 3f64.sqrt() / 2.0) as i32, dl / 2);
    let pts: Vec<(i32, i32)> = match e.ty {
        1 => vec![(0, -dl), (s3, half), (-s3, half)],
        2 => {
            let h = (unit / 2.0 * 2f64.sqrt() * size) as i32;
            vec![(-h, -h), (h, -h), (h, h), (-h, h)]
        }
        3 => {
            let (c18, s18) = (
                (dl as f64 * 18f64.to_radians().cos()) as i32,
                (dl as f64 * 18f64.to_radians().sin()) as i32,
            );
            let (s36, c36) = (
                (dl as f64 * 36f64.to_radians().sin()) as i32,
                (dl as f64 * 36f64.to_radians().cos()) as i32,
            );
            vec![(0, -dl), (-c18, -s18), (-s36, c36), (s36, c36), (c18, -s18)]
        }
        4 => vec![
            (0, -dl),
            (-s3, -half),
            (-s3, half),
            (0, dl),
            (s3, half),
            (s3, -half),
        ],
        _ => return Shape::Circle(dl as f64),
    };
    Shape::Polygon(pts.into_iter().map(|(x, y)| (x as f64, y as f64)).collect())
}

fn segment_distance(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (qx * qx + qy * qy).sqrt()
}

/// Edge lines of a convex polygon as unit normals pointing outwards: `(nx, ny, c)` with signed
/// distance `nx·x + ny·y − c` (positive outside).
fn edge_lines(pts: &[(f64, f64)]) -> Vec<(f64, f64, f64)> {
    let n = pts.len();
    let centroid = pts.iter().fold((0.0, 0.0), |s, p| {
        (s.0 + p.0 / n as f64, s.1 + p.1 / n as f64)
    });
    (0..n)
        .map(|i| {
            let (a, b) = (pts[i], pts[(i + 1) % n]);
            let (mut nx, mut ny) = (b.1 - a.1, a.0 - b.0);
            let len = (nx * nx + ny * ny).sqrt();
            (nx, ny) = (nx / len, ny / len);
            let mut c = nx * a.0 + ny * a.1;
            if nx * centroid.0 + ny * centroid.1 - c > 0.0 {
                (nx, ny, c) = (-nx, -ny, -c);
            }
            (nx, ny, c)
        })
        .collect()
}

/// The unrotated ink of a shape in a `(2r+1)²` patch centred on the shape: 255 where the pixel
/// centre is within 1 px of the outline, `fill` inside, 0 elsewhere.
fn rasterise(shape: &Shape, fill: u8, r: i32) -> Vec<u8> {
    let side = 2 * r + 1;
    let mut out = vec![0u8; (side * side) as usize];
    match shape {
        Shape::Circle(rad) => {
            let (lo, hi, inner) = ((rad - 1.0).max(0.0).powi(2), (rad + 1.0).powi(2), rad * rad);
            for j in 0..side {
                for i in 0..side {
                    let (x, y) = ((i - r) as f64, (j - r) as f64);
                    let d2 = x * x + y * y;
                    out[(j * side + i) as usize] = if d2 >= lo && d2 <= hi {
                        255
                    } else if d2 <= inner {
                        fill
                    } else {
                        0
                    };
                }
            }
        }
        Shape::Polygon(pts) => {
            let lines = edge_lines(pts);
            // Every vertex lies within `r − 3` of the centre, so ink lies within `r − 1`.
            let reach2 = ((r - 1) * (r - 1)) as f64;
            for j in 0..side {
                for i in 0..side {
                    let p = ((i - r) as f64, (j - r) as f64);
                    if p.0 * p.0 + p.1 * p.1 > reach2 {
                        continue;
                    }
                    let (mut max_d, mut min_abs) = (f64::MIN, f64::MAX);
                    for &(nx, ny, c) in &lines {
                        let d = nx * p.0 + ny * p.1 - c;
                        max_d = max_d.max(d);
                        min_abs = min_abs.min(d.abs());
                    }
                    // Inside a convex polygon the distance to the outline is the distance to the
                    // nearest edge line; outside, only pixels within 1 px of every line can be
                    // near it, and those get the exact segment distance.
                    let v = if max_d > 1.0 {
                        0
                    } else if max_d <= 0.0 {
                        if min_abs <= 1.0 {
                            255
                        } else {
                            fill
                        }
                    } else if (0..pts.len())
                        .any(|k| segment_distance(p, pts[k], pts[(k + 1) % pts.len()]) <= 1.0)
                    {
                        255
                    } else {
                        0
                    };
                    out[(j * side + i) as usize] = v;
                }
            }
        }
    }
    out
}

fn entity_patch(slot: [f64; 4], e: &Entity, sizes: &[f64]) -> Patch {
    let (cx, cy) = (
        (slot[1] * SIDE as f64) as i32,
        (slot[0] * SIDE as f64) as i32,
    );
    let unit = slot[2].min(slot[3]) * SIDE as f64 / 2.0;
    let shape = shape_of(e, unit, sizes[e.size as usize]);
    let fill = 255 - COLOR_VALUES[e.color as usize];
    let r = (unit * sizes[e.size as usize]) as i32 + 3;
    let side = 2 * r + 1;
    let ink = rotate(
        &rasterise(&shape, fill, r),
        side,
        ANGLE_VALUES[e.angle as usize],
    );
    Patch {
        x0: cx - r,
        y0: cy - r,
        side,
        ink,
    }
}

/// Rotates a square patch about its centre by `degrees` (counter-clockwise on screen), bilinear,
/// zero outside; right angles are exact pixel permutations.
fn rotate(src: &[u8], side: i32, degrees: f64) -> Vec<u8> {
    let exact = |d: f64| match d as i32 {
        0 => Some((1.0, 0.0)),
        90 => Some((0.0, 1.0)),
        -90 => Some((0.0, -1.0)),
        180 => Some((-1.0, 0.0)),
        _ => None,
    };
    let (cos, sin) =
        exact(degrees).unwrap_or((degrees.to_radians().cos(), degrees.to_radians().sin()));
    if (cos, sin) == (1.0, 0.0) {
        return src.to_vec();
    }
    let r = (side / 2) as f64;
    if let Some((c, s)) = exact(degrees) {
        // A right angle maps pixels to pixels: no interpolation needed.
        let (c, s, r) = (c as i32, s as i32, side / 2);
        let mut out = vec![0u8; src.len()];
        for y in 0..side {
            for x in 0..side {
                let (xs, ys) = (r + c * (x - r) - s * (y - r), r + s * (x - r) + c * (y - r));
                out[(y * side + x) as usize] = src[(ys * side + xs) as usize];
            }
        }
        return out;
    }
    let at = |x: i32, y: i32| {
        if (0..side).contains(&x) && (0..side).contains(&y) {
            src[(y * side + x) as usize] as f64
        } else {
            0.0
        }
    };
    let mut out = vec![0u8; src.len()];
    // Rotation keeps distances: ink (within r − 1 of the centre) stays within r.
    let reach2 = r * r;
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (x as f64 - r, y as f64 - r);
            if dx * dx + dy * dy > reach2 {
                continue;
            }
            // OpenCV's matrix for a positive angle maps destination to source like this.
            let xs = r + cos * dx - sin * dy;
            let ys = r + sin * dx + cos * dy;
            // Shifted truncation = floor for the small negative values at the patch border.
            let (x0, y0) = ((xs + 64.0) as i32 - 64, (ys + 64.0) as i32 - 64);
            let (fx, fy) = (xs - x0 as f64, ys - y0 as f64);
            let v = at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + at(x0 + 1, y0) * fx * (1.0 - fy)
                + at(x0, y0 + 1) * (1.0 - fx) * fy
                + at(x0 + 1, y0 + 1) * fx * fy;
            out[(y * side + x) as usize] = (v + 0.5).min(255.0) as u8;
        }
    }
    out
}
