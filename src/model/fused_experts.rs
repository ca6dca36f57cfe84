//! The official SCL's relation experts in training — each expert's `9 → 64 → 32 → 1` MLP over
//! every attribute row — as one hand-written kernel with its own backward.
//!
//! Why: timed alone, the five experts' MLP over a batch's 20,480 attribute rows costs
//! 37 ms forward and backward in libtorch, about a quarter of the official @80 f32 training
//! step, at 44 GFLOP/s (BENCHMARKS.md, "The next lever"). Its backward is 3.7× its forward:
//! weight-gradient products of tiny `M × N` with `K = 20,480`, ReLU passes over 39 MB of
//! hidden layers, and the five experts' copies of the input. Here a tile of 32 rows keeps its
//! hidden layers in the L1 cache: the forward writes only the outputs, and the backward
//! recomputes a tile's hidden layers, then takes every gradient of that tile before it moves on.
//!
//! Deferred like [`super::fused`]'s first block: inside [`crate::optim::deferring`] the MLP's
//! output is a fresh leaf. Its deferred pass reads that leaf's gradient, computes the
//! experts' parameter gradients and the input's, and runs one `backward` of the surrogate
//! `Σ θ·∂θ + Σ x·∂x`, which carries the input's gradient on into `rel.res` and the perception
//! stack. Deferred passes run last registered first, so this one runs before the first block's
//! (whose output gradient it produces).
//!
//! Exactness: the same function as libtorch's path, rounded differently. Each gradient sum is
//! f32 over a tile of 32 rows, then (weights: over 8 tiles in f32 first) f64; `tests` check
//! outputs and every gradient against libtorch's f32 path and an f64 reference. AVX2 + FMA
//! only, like the first block; without them the experts take libtorch's path.

use tch::{Device, Kind, Tensor};

use super::fused::{output_grad, parts, slice_of};
use super::team::map_on_team;
use super::Params;
use crate::optim::DeferredBackward;
use crate::Result;

/// Values per attribute row (the 8 context panels and one candidate).
const IN: usize = 9;
/// An input row padded to two vectors (the input gradient's product is two vectors wide).
const XP: usize = 16;
/// Input rows of the weight gradient `∂W₁` (pairs of rows: 9 rounded up to 10).
const IN_PAIRS: usize = IN.div_ceil(2) * 2;
/// The hidden widths the kernel is written for (the official SCL's experts).
const H1: usize = 64;
const H2: usize = 32;
/// Rows per tile: a tile's hidden layers and their gradients fit the L1 cache (28 KB).
const TILE: usize = 32;
/// Tiles summed in f32 before the sums go into the f64 totals.
const FLUSH: usize = 8;
/// Tiles per share of a pass: the team's threads claim shares in turn, so a training batch's
/// 640 tiles make 20 shares, enough to keep both threads busy to the end; a share's weight
/// gradient sums (≈ 110 KB for five experts) are few enough to add up cheaply.
const TILES_PER_SHARE: usize = 32;

/// The experts' MLP outputs `(K · experts · R/K, 1)` (sample-major, then expert, rows in
/// `per_attribute`'s order, as [`super::scl_official`]'s batched pass lays them out) when the
/// fused kernel applies: inside [`crate::optim::deferring`], f32 on the CPU, hidden widths
/// `[64, 32]`, plain weights (K = 1) or K-batched ones (a leading axis of K samples, as mask
/// training passes them; sample k's weights act on the k-th K-th of the rows). `None` means:
/// take libtorch's path.
///
/// # Shapes
/// `per_attribute`: `(B, …, 9)`, `R` rows in all, `B` divisible by K.
pub fn experts_train(
    p: &Params,
    experts: usize,
    hidden: &[i64],
    per_attribute: &Tensor,
) -> Result<Option<Tensor>> {
    if !crate::optim::deferral_open() || !enabled() || hidden != [H1 as i64, H2 as i64] {
        return Ok(None);
    }
    if !applies(per_attribute) {
        return Ok(None);
    }
    let Some(params) = ExpertParams::get(p, experts, per_attribute.requires_grad())? else {
        return Ok(None);
    };
    if per_attribute.size()[0] % params.samples as i64 != 0 {
        return Ok(None);
    }
    let (y, pending) = forward(params, per_attribute)?;
    crate::optim::defer(Box::new(pending));
    Ok(Some(y))
}

/// `AVR_FUSED_EXPERTS=0` turns the kernel off (libtorch's path throughout), so that one binary
/// can measure both sides of the comparison in BENCHMARKS.md.
pub fn enabled() -> bool {
    std::env::var("AVR_FUSED_EXPERTS").map_or(true, |v| v != "0")
}

/// Whether the input is one the kernel reads: f32 on the CPU, rows of 9, a compute precision
/// it acts in.
fn applies(x: &Tensor) -> bool {
    x.kind() == Kind::Float
        && x.device() == Device::Cpu
        && x.size().last() == Some(&(IN as i64))
        && acts_in(super::layers::compute_precision())
        && simd::available()
}

/// Whether the kernel acts in steps of `precision`: f32 only. In bf16 its input is the bf16
/// output of a linear layer; cast up to f32 for the kernel, the step was no faster than with
/// bf16 GEMMs (BENCHMARKS.md, sixth sitting of 2026-12-07).
pub fn acts_in(precision: super::Precision) -> bool {
    precision == super::Precision::F32
}

/// The names of one expert's MLP tensors, in [`ExpertParams::tensors`]' order.
const NAMES: [&str; 6] = [
    "mlp.0.weight",
    "mlp.0.bias",
    "mlp.1.weight",
    "mlp.1.bias",
    "mlp.2.weight",
    "mlp.2.bias",
];

/// Their shapes (PyTorch's `Linear`: weight `(out, in)`).
fn shapes() -> [Vec<i64>; 6] {
    let (i, a, b) = (IN as i64, H1 as i64, H2 as i64);
    [
        vec![a, i],
        vec![a],
        vec![b, a],
        vec![b],
        vec![1, b],
        vec![1],
    ]
}

/// Every expert's MLP tensors (shallow clones: the same storage and graph).
struct ExpertParams {
    tensors: Vec<[Tensor; 6]>,
    /// K: 1 for plain weights, else the leading axis of K-batched ones.
    samples: usize,
    batched: bool,
}

impl ExpertParams {
    /// `rel.experts.{e}.mlp.*` when they have the kernel's shapes, f32 on the CPU; `None` when
    /// nothing needs a gradient (then autograd's path costs nothing extra).
    fn get(p: &Params, experts: usize, input_trained: bool) -> Result<Option<Self>> {
        let probe = p.get("rel.experts.0.mlp.0.weight")?;
        let batched = probe.dim() == 3;
        let samples = if batched { probe.size()[0] } else { 1 };
        let mut tensors = Vec::with_capacity(experts);
        for e in 0..experts {
            let get = |n: &str| {
                p.get(&format!("rel.experts.{e}.{n}"))
                    .map(Tensor::shallow_clone)
            };
            let ts: [Tensor; 6] = [
                get(NAMES[0])?,
                get(NAMES[1])?,
                get(NAMES[2])?,
                get(NAMES[3])?,
                get(NAMES[4])?,
                get(NAMES[5])?,
            ];
            let fits = ts.iter().zip(shapes()).all(|(t, s)| {
                let s = if batched {
                    [vec![samples], s].concat()
                } else {
                    s
                };
                t.size() == s && t.kind() == Kind::Float && t.device() == Device::Cpu
            });
            if !fits {
                return Ok(None);
            }
            tensors.push(ts);
        }
        let trained = input_trained || tensors.iter().flatten().any(Tensor::requires_grad);
        Ok(
            (trained && experts > 0 && samples > 0).then_some(ExpertParams {
                tensors,
                samples: samples as usize,
                batched,
            }),
        )
    }

    /// Each sample's weights, one [`Packed`] per expert in the kernel's layouts.
    fn packed(&self) -> Result<Vec<Vec<Packed>>> {
        (0..self.samples)
            .map(|k| {
                self.tensors
                    .iter()
                    .map(|ts| Packed::new(&ts.each_ref().map(|t| self.sample(t, k))))
                    .collect()
            })
            .collect()
    }

    /// Sample `k` of a tensor (the tensor itself when the weights are plain).
    fn sample(&self, t: &Tensor, k: usize) -> Tensor {
        match self.batched {
            true => t.select(0, k as i64),
            false => t.shallow_clone(),
        }
    }

    /// The gradients of expert `e`'s tensors from each sample's sums, in the tensors' shapes.
    fn gradients(&self, e: usize, sums: &[Vec<Sums<f64>>]) -> [Tensor; 6] {
        let per_sample: Vec<[Tensor; 6]> = sums.iter().map(|s| s[e].tensors()).collect();
        std::array::from_fn(|i| match self.batched {
            true => Tensor::stack(&per_sample.iter().map(|g| &g[i]).collect::<Vec<_>>(), 0),
            false => per_sample[0][i].shallow_clone(),
        })
    }
}

/// One expert's weights, laid out for the loops: each product reads whole vectors of a row.
struct Packed {
    /// `W₁ᵀ` `[9][64]`: the forward's first layer.
    w1t: Vec<f32>,
    b1: Vec<f32>,
    /// `W₂ᵀ` `[64][32]`: the forward's second layer.
    w2t: Vec<f32>,
    /// `W₂` `[32][64]`: the backward's `∂h₁ = ∂h₂ W₂`.
    w2: Vec<f32>,
    b2: Vec<f32>,
    w3: Vec<f32>,
    b3: f32,
    /// `W₁` `[64][16]`, each row padded with zeros: the backward's `∂x = ∂h₁ W₁`.
    w1p: Vec<f32>,
}

impl Packed {
    fn new(ts: &[Tensor; 6]) -> Result<Self> {
        let values = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(Vec::<f32>::try_from(
                t.detach().contiguous().flatten(0, -1),
            )?)
        };
        let w1 = values(&ts[0])?;
        let w2 = values(&ts[2])?;
        let mut w1t = vec![0.0; IN * H1];
        let mut w1p = vec![0.0; H1 * XP];
        for j in 0..H1 {
            for i in 0..IN {
                w1t[i * H1 + j] = w1[j * IN + i];
                w1p[j * XP + i] = w1[j * IN + i];
            }
        }
        let mut w2t = vec![0.0; H1 * H2];
        for k in 0..H2 {
            for j in 0..H1 {
                w2t[j * H2 + k] = w2[k * H1 + j];
            }
        }
        Ok(Packed {
            w1t,
            b1: values(&ts[1])?,
            w2t,
            w2,
            b2: values(&ts[3])?,
            w3: values(&ts[4])?,
            b3: values(&ts[5])?[0],
            w1p,
        })
    }
}

/// What the deferred backward of one call needs.
struct PendingExperts {
    /// The caller's input, with its graph (the surrogate's `Σ x·∂x` goes through it).
    input: Tensor,
    /// Its values as contiguous rows `(R, 9)`.
    rows: Tensor,
    /// The output leaf `(K, experts, R/K)`.
    output: Tensor,
    params: ExpertParams,
    /// `[sample][expert]`.
    packed: Vec<Vec<Packed>>,
}

/// A share of the work: rows `rows` (on tile boundaries) of sample `sample`'s
/// `R/K` rows.
struct Share {
    sample: usize,
    rows: std::ops::Range<usize>,
}

/// Each sample's rows in contiguous shares of [`TILES_PER_SHARE`] tiles, sample-major (the same
/// shares for every number of threads).
fn shares(samples: usize, per_sample: usize) -> Vec<Share> {
    let tiles = parts(per_sample.div_ceil(TILE), TILES_PER_SHARE);
    (0..samples)
        .flat_map(|sample| {
            tiles.iter().map(move |t| Share {
                sample,
                rows: t.start * TILE..(t.end * TILE).min(per_sample),
            })
        })
        .collect()
}

fn forward(params: ExpertParams, per_attribute: &Tensor) -> Result<(Tensor, PendingExperts)> {
    let rows = per_attribute.detach().reshape([-1, IN as i64]).contiguous();
    let (k, e) = (params.samples, params.tensors.len());
    let r = rows.size()[0] as usize / k; // rows per sample
    let packed = params.packed()?;
    let x = slice_of(&rows);
    let work = shares(k, r);
    let parts = map_on_team(work.iter().collect(), |s| {
        forward_rows(
            &packed[s.sample],
            sample_rows(x, s.sample, r),
            s.rows.clone(),
        )
    });
    // Each part holds its rows for every expert (expert-major); the output is sample-major,
    // then expert-major.
    let mut out = vec![0.0f32; k * e * r];
    for (share, part) in work.iter().zip(&parts) {
        let n = share.rows.len();
        for j in 0..e {
            let at = (share.sample * e + j) * r + share.rows.start;
            out[at..][..n].copy_from_slice(&part[j * n..][..n]);
        }
    }
    let output = Tensor::from_slice(&out)
        .reshape([k as i64, e as i64, r as i64])
        .set_requires_grad(true);
    let y = output.reshape([(k * e * r) as i64, 1]);
    let pending = PendingExperts {
        input: per_attribute.shallow_clone(),
        rows,
        output,
        params,
        packed,
    };
    Ok((y, pending))
}

/// Sample `k`'s rows of `x` `(K · r, 9)`.
fn sample_rows(x: &[f32], k: usize, r: usize) -> &[f32] {
    &x[k * r * IN..][..r * IN]
}

/// A share's outputs: `[expert][row]` for the rows of `range`.
fn forward_rows(packed: &[Packed], x: &[f32], range: std::ops::Range<usize>) -> Vec<f32> {
    let n = range.len();
    let mut out = vec![0.0f32; packed.len() * n];
    let mut tile = Tile::new();
    for start in range.clone().step_by(TILE) {
        let len = TILE.min(range.end - start);
        tile.load_rows(x, start, len);
        for (e, w) in packed.iter().enumerate() {
            // SAFETY: `applies` checked `simd::available()`.
            unsafe { simd::forward_tile(w, &mut tile) };
            out[e * n + start - range.start..][..len].copy_from_slice(&tile.y[..len]);
        }
    }
    out
}

/// A tile's rows and everything computed from them, row-major.
struct Tile {
    x: [[f32; XP]; TILE],
    h1: [[f32; H1]; TILE],
    h2: [[f32; H2]; TILE],
    y: [f32; TILE],
    /// The output gradient (0 on rows past the data's end, so they add nothing).
    g: [f32; TILE],
    dh2: [[f32; H2]; TILE],
    dh1: [[f32; H1]; TILE],
    /// The input gradient, summed over the experts.
    dx: [[f32; XP]; TILE],
}

impl Tile {
    fn new() -> Box<Tile> {
        Box::new(Tile {
            x: [[0.0; XP]; TILE],
            h1: [[0.0; H1]; TILE],
            h2: [[0.0; H2]; TILE],
            y: [0.0; TILE],
            g: [0.0; TILE],
            dh2: [[0.0; H2]; TILE],
            dh1: [[0.0; H1]; TILE],
            dx: [[0.0; XP]; TILE],
        })
    }

    /// Rows `start..start + len` of `x` `(R, 9)`; the rest of the tile zero.
    fn load_rows(&mut self, x: &[f32], start: usize, len: usize) {
        for (i, row) in self.x.iter_mut().enumerate() {
            *row = [0.0; XP];
            if i < len {
                row[..IN].copy_from_slice(&x[(start + i) * IN..][..IN]);
            }
        }
    }
}

/// One expert's gradient sums: f32 over a tile (the vectors) or a few ([`FLUSH`], the
/// matrices), f64 in the totals.
#[derive(Clone)]
struct Sums<T> {
    /// `∂W₁ᵀ` `[10][64]` (row 9 sums the zero padding).
    dw1t: Vec<T>,
    db1: Vec<T>,
    /// `∂W₂` `[32][64]`.
    dw2: Vec<T>,
    db2: Vec<T>,
    dw3: Vec<T>,
    /// Summed in f64 by the caller ([`backward_rows`]), not by the tile loop.
    db3: T,
}

impl<T: Copy + Default> Sums<T> {
    fn zero() -> Self {
        Sums {
            dw1t: vec![T::default(); IN_PAIRS * H1],
            db1: vec![T::default(); H1],
            dw2: vec![T::default(); H2 * H1],
            db2: vec![T::default(); H2],
            dw3: vec![T::default(); H2],
            db3: T::default(),
        }
    }
}

/// `to += from` in f64, then `from = 0`.
fn take(to: &mut [f64], from: &mut [f32]) {
    for (t, f) in to.iter_mut().zip(from.iter_mut()) {
        *t += *f as f64;
        *f = 0.0;
    }
}

impl Sums<f64> {
    /// Adds `part`'s vectors (the biases' and `w₃`'s sums) and zeroes them: after every tile,
    /// since these sums cancel the most (a bias gradient is a sum of signed terms).
    fn take_vectors(&mut self, part: &mut Sums<f32>) {
        take(&mut self.db1, &mut part.db1);
        take(&mut self.db2, &mut part.db2);
        take(&mut self.dw3, &mut part.dw3);
    }

    /// Adds `part`'s weight matrices and zeroes them: after every [`FLUSH`] tiles.
    fn take_matrices(&mut self, part: &mut Sums<f32>) {
        take(&mut self.dw1t, &mut part.dw1t);
        take(&mut self.dw2, &mut part.dw2);
    }

    fn add(&mut self, o: &Sums<f64>) {
        let add = |to: &mut [f64], from: &[f64]| to.iter_mut().zip(from).for_each(|(t, f)| *t += f);
        add(&mut self.dw1t, &o.dw1t);
        add(&mut self.db1, &o.db1);
        add(&mut self.dw2, &o.dw2);
        add(&mut self.db2, &o.db2);
        add(&mut self.dw3, &o.dw3);
        self.db3 += o.db3;
    }

    /// The gradients in PyTorch's layouts, in [`NAMES`]' order.
    fn tensors(&self) -> [Tensor; 6] {
        let mut dw1 = vec![0.0f64; H1 * IN];
        for j in 0..H1 {
            for i in 0..IN {
                dw1[j * IN + i] = self.dw1t[i * H1 + j];
            }
        }
        let tensor =
            |v: &[f64], shape: Vec<i64>| Tensor::from_slice(v).to_kind(Kind::Float).reshape(shape);
        let [s0, s1, s2, s3, s4, s5] = shapes();
        [
            tensor(&dw1, s0),
            tensor(&self.db1, s1),
            tensor(&self.dw2, s2),
            tensor(&self.db2, s3),
            tensor(&self.dw3, s4),
            tensor(&[self.db3], s5),
        ]
    }
}

/// A share's backward: the input gradient of its rows `(len, 9)` and each
/// expert's gradient sums.
fn backward_rows(
    packed: &[Packed],
    x: &[f32],
    g: &[f32],
    range: std::ops::Range<usize>,
) -> (Vec<f32>, Vec<Sums<f64>>) {
    let r = x.len() / IN;
    let mut dx = vec![0.0f32; range.len() * IN];
    let mut totals = vec![Sums::<f64>::zero(); packed.len()];
    let mut parts = vec![Sums::<f32>::zero(); packed.len()];
    let mut tile = Tile::new();
    for (t, start) in range.clone().step_by(TILE).enumerate() {
        let len = TILE.min(range.end - start);
        tile.load_rows(x, start, len);
        tile.dx = [[0.0; XP]; TILE];
        for (e, w) in packed.iter().enumerate() {
            tile.g = [0.0; TILE];
            tile.g[..len].copy_from_slice(&g[e * r + start..][..len]);
            // ∂b₃ = Σ g, a sum that cancels: in f64 from the start.
            totals[e].db3 += tile.g[..len].iter().map(|&v| v as f64).sum::<f64>();
            // SAFETY: `applies` checked `simd::available()` before the forward.
            unsafe {
                simd::forward_tile(w, &mut tile);
                simd::backward_tile(w, &mut tile, &mut parts[e]);
            }
        }
        for (i, row) in tile.dx[..len].iter().enumerate() {
            dx[(start - range.start + i) * IN..][..IN].copy_from_slice(&row[..IN]);
        }
        for (total, part) in totals.iter_mut().zip(&mut parts) {
            total.take_vectors(part);
            if (t + 1) % FLUSH == 0 {
                total.take_matrices(part);
            }
        }
    }
    totals
        .iter_mut()
        .zip(&mut parts)
        .for_each(|(s, p)| s.take_matrices(p));
    (dx, totals)
}

impl DeferredBackward for PendingExperts {
    /// Reads the output's gradient, then one backward of `Σ θ·∂θ + Σ x·∂x` (an output that got
    /// no gradient adds none).
    fn apply(self: Box<Self>, keep_graph: bool) -> Result<()> {
        let Some(grad) = output_grad("fused experts", &self.output)? else {
            return Ok(());
        };
        let (x, g) = (slice_of(&self.rows), slice_of(&grad));
        let (k, e) = (self.params.samples, self.params.tensors.len());
        let r = x.len() / IN / k;
        let work = shares(k, r);
        let parts = map_on_team(work.iter().collect(), |s| {
            let g = &g[s.sample * e * r..][..e * r];
            backward_rows(
                &self.packed[s.sample],
                sample_rows(x, s.sample, r),
                g,
                s.rows.clone(),
            )
        });
        // The shares are sample-major, in row order: their input gradients follow each other.
        let mut sums = vec![vec![Sums::<f64>::zero(); e]; k];
        let mut dx = Vec::with_capacity(x.len());
        for (share, (part_dx, part_sums)) in work.iter().zip(&parts) {
            dx.extend_from_slice(part_dx);
            let to = &mut sums[share.sample];
            to.iter_mut().zip(part_sums).for_each(|(s, p)| s.add(p));
        }
        let mut pairs = Vec::new();
        for (j, ts) in self.params.tensors.iter().enumerate() {
            pairs.extend(ts.iter().zip(self.params.gradients(j, &sums)));
        }
        pairs.push((
            &self.input,
            Tensor::from_slice(&dx).reshape(self.input.size()),
        ));
        crate::optim::backward_with_grads(pairs, keep_graph)
    }
}

/// The per-tile loops, written for AVX2 + FMA. Without them [`experts_train`] declines.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Packed, Sums, Tile, H1, H2, IN_PAIRS, TILE, XP};
    use std::arch::x86_64::*;

    /// Whether this CPU runs the loops.
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    // The helpers are `unsafe` (AVX2, raw pointers) and inlined into the two
    // `#[target_feature]` loops below, where AVX2 is known to be present. Every pointer they
    // read points into a `Tile` or a `Packed` whose sizes the constants fix.

    /// `acc[a][q] += Σ_k rows[a·sa + k] · w[k·sw + 8q ..][..8]` for `k < depth`: `A` rows
    /// times a `depth × 8Q` block of a matrix (row stride `sw`), each weight vector loaded once
    /// for the `A` rows.
    #[inline(always)]
    unsafe fn rows_times<const A: usize, const Q: usize>(
        rows: *const f32,
        sa: usize,
        depth: usize,
        w: *const f32,
        sw: usize,
        acc: &mut [[__m256; Q]; A],
    ) {
        let (mut rp, mut wp) = (rows, w);
        for _ in 0..depth {
            let mut wv = [_mm256_setzero_ps(); Q];
            for (q, v) in wv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(wp.add(8 * q));
            }
            for (a, acc_a) in acc.iter_mut().enumerate() {
                let s = _mm256_broadcast_ss(&*rp.add(a * sa));
                for (q, v) in acc_a.iter_mut().enumerate() {
                    *v = _mm256_fmadd_ps(s, wv[q], *v);
                }
            }
            // Wrapping: after the last row these point past their buffers, never read.
            rp = rp.wrapping_add(1);
            wp = wp.wrapping_add(sw);
        }
    }

    /// `Σ_r a[r·sa + i] · b[r·sb + 8q ..][..8]` over the tile's rows for `i < A`, `q < Q`: a
    /// block of a weight gradient, the outer products of two columns' worth of rows.
    #[inline(always)]
    unsafe fn outer<const A: usize, const Q: usize>(
        a: *const f32,
        sa: usize,
        b: *const f32,
        sb: usize,
    ) -> [[__m256; Q]; A] {
        let mut acc = [[_mm256_setzero_ps(); Q]; A];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..TILE {
            let mut bv = [_mm256_setzero_ps(); Q];
            for (q, v) in bv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(bp.add(8 * q));
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let s = _mm256_broadcast_ss(&*ap.add(i));
                for (q, v) in acc_i.iter_mut().enumerate() {
                    *v = _mm256_fmadd_ps(s, bv[q], *v);
                }
            }
            ap = ap.wrapping_add(sa);
            bp = bp.wrapping_add(sb);
        }
        acc
    }

    /// `to[a·st + 8q ..][..8] += acc[a][q]`.
    #[inline(always)]
    unsafe fn add_to<const A: usize, const Q: usize>(
        to: *mut f32,
        st: usize,
        acc: &[[__m256; Q]; A],
    ) {
        for (a, acc_a) in acc.iter().enumerate() {
            for (q, v) in acc_a.iter().enumerate() {
                let p = to.add(a * st + 8 * q);
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *v));
            }
        }
    }

    /// `acc` set to `v[8q ..][..8]` on every row.
    #[inline(always)]
    unsafe fn splat_rows<const A: usize, const Q: usize>(v: *const f32) -> [[__m256; Q]; A] {
        let mut acc = [[_mm256_setzero_ps(); Q]; A];
        for acc_a in acc.iter_mut() {
            for (q, x) in acc_a.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(v.add(8 * q));
            }
        }
        acc
    }

    /// Stores `acc[a][q]` to `to[a·st + 8q ..]`, through a ReLU (`relu`) or through the mask
    /// `gate[a·sg + 8q ..] > 0` (the ReLU's backward).
    #[inline(always)]
    unsafe fn store_rows<const A: usize, const Q: usize>(
        acc: &[[__m256; Q]; A],
        to: *mut f32,
        st: usize,
        gate: Option<(*const f32, usize)>,
    ) {
        let zero = _mm256_setzero_ps();
        for (a, acc_a) in acc.iter().enumerate() {
            for (q, v) in acc_a.iter().enumerate() {
                let out = match gate {
                    // NaN passes (as libtorch's ReLU): `max` returns its second operand then.
                    None => _mm256_max_ps(zero, *v),
                    Some((g, sg)) => {
                        let on =
                            _mm256_cmp_ps(_mm256_loadu_ps(g.add(a * sg + 8 * q)), zero, _CMP_GT_OQ);
                        _mm256_and_ps(*v, on)
                    }
                };
                _mm256_storeu_ps(to.add(a * st + 8 * q), out);
            }
        }
    }

    #[inline(always)]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// The expert's forward on the tile: `h₁ = relu(x W₁ᵀ + b₁)`, `h₂ = relu(h₁ W₂ᵀ + b₂)`,
    /// `y = h₂ w₃ + b₃`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn forward_tile(w: &Packed, t: &mut Tile) {
        let x = t.x.as_ptr() as *const f32;
        let h1 = t.h1.as_mut_ptr() as *mut f32;
        let h2 = t.h2.as_mut_ptr() as *mut f32;
        for r in (0..TILE).step_by(2) {
            for half in [0, H1 / 2] {
                let mut acc = splat_rows::<2, 4>(w.b1.as_ptr().add(half));
                rows_times(
                    x.add(r * XP),
                    XP,
                    super::IN,
                    w.w1t.as_ptr().add(half),
                    H1,
                    &mut acc,
                );
                store_rows(&acc, h1.add(r * H1 + half), H1, None);
            }
        }
        for r in (0..TILE).step_by(2) {
            let mut acc = splat_rows::<2, 4>(w.b2.as_ptr());
            rows_times(h1.add(r * H1), H1, H1, w.w2t.as_ptr(), H2, &mut acc);
            store_rows(&acc, h2.add(r * H2), H2, None);
        }
        for r in 0..TILE {
            let mut acc = _mm256_setzero_ps();
            for q in 0..H2 / 8 {
                let h = _mm256_loadu_ps(h2.add(r * H2 + 8 * q));
                acc = _mm256_fmadd_ps(h, _mm256_loadu_ps(w.w3.as_ptr().add(8 * q)), acc);
            }
            t.y[r] = horizontal_sum(acc) + w.b3;
        }
    }

    /// The expert's backward on the tile (after [`forward_tile`]): `∂h₂`, `∂h₁`, the input
    /// gradient added to `t.dx`, and the parameter gradients added to `s`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn backward_tile(w: &Packed, t: &mut Tile, s: &mut Sums<f32>) {
        let zero = _mm256_setzero_ps();
        let x = t.x.as_ptr() as *const f32;
        let h1 = t.h1.as_ptr() as *const f32;
        let h2 = t.h2.as_ptr() as *const f32;
        let dh1 = t.dh1.as_mut_ptr() as *mut f32;
        let dh2 = t.dh2.as_mut_ptr() as *mut f32;
        let dx = t.dx.as_mut_ptr() as *mut f32;
        // ∂h₂ = g w₃ through the ReLU; ∂w₃ = Σ g h₂, ∂b₂ = Σ ∂h₂ (∂b₃ = Σ g: the caller's).
        let mut dw3 = splat_rows::<1, 4>(s.dw3.as_ptr());
        let mut db2 = splat_rows::<1, 4>(s.db2.as_ptr());
        for r in 0..TILE {
            let g = _mm256_set1_ps(t.g[r]);
            for q in 0..H2 / 8 {
                let h = _mm256_loadu_ps(h2.add(r * H2 + 8 * q));
                let on = _mm256_cmp_ps(h, zero, _CMP_GT_OQ);
                let d = _mm256_and_ps(
                    _mm256_mul_ps(g, _mm256_loadu_ps(w.w3.as_ptr().add(8 * q))),
                    on,
                );
                _mm256_storeu_ps(dh2.add(r * H2 + 8 * q), d);
                dw3[0][q] = _mm256_fmadd_ps(g, h, dw3[0][q]);
                db2[0][q] = _mm256_add_ps(db2[0][q], d);
            }
        }
        for q in 0..H2 / 8 {
            _mm256_storeu_ps(s.dw3.as_mut_ptr().add(8 * q), dw3[0][q]);
            _mm256_storeu_ps(s.db2.as_mut_ptr().add(8 * q), db2[0][q]);
        }
        // ∂h₁ = ∂h₂ W₂ through the ReLU; ∂b₁ = Σ ∂h₁.
        for r in (0..TILE).step_by(2) {
            for half in [0, H1 / 2] {
                let mut acc = [[zero; 4]; 2];
                rows_times(
                    dh2.add(r * H2),
                    H2,
                    H2,
                    w.w2.as_ptr().add(half),
                    H1,
                    &mut acc,
                );
                store_rows(
                    &acc,
                    dh1.add(r * H1 + half),
                    H1,
                    Some((h1.add(r * H1 + half), H1)),
                );
            }
        }
        let mut db1 = splat_rows::<1, 8>(s.db1.as_ptr());
        for r in 0..TILE {
            for (q, v) in db1[0].iter_mut().enumerate() {
                *v = _mm256_add_ps(*v, _mm256_loadu_ps(dh1.add(r * H1 + 8 * q)));
            }
        }
        for (q, v) in db1[0].iter().enumerate() {
            _mm256_storeu_ps(s.db1.as_mut_ptr().add(8 * q), *v);
        }
        // ∂x += ∂h₁ W₁ (the padding columns of W₁ are zero, so ∂x's padding stays zero).
        for r in (0..TILE).step_by(4) {
            let mut acc = [[zero; 2]; 4];
            for (a, acc_a) in acc.iter_mut().enumerate() {
                for (q, v) in acc_a.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(dx.add((r + a) * XP + 8 * q));
                }
            }
            rows_times(dh1.add(r * H1), H1, H1, w.w1p.as_ptr(), XP, &mut acc);
            for (a, acc_a) in acc.iter().enumerate() {
                for (q, v) in acc_a.iter().enumerate() {
                    _mm256_storeu_ps(dx.add((r + a) * XP + 8 * q), *v);
                }
            }
        }
        // ∂W₂[k][j] += Σ_r ∂h₂[r][k] h₁[r][j].
        for k in (0..H2).step_by(2) {
            for half in [0, H1 / 2] {
                let acc = outer::<2, 4>(dh2.add(k), H2, h1.add(half), H1);
                add_to(s.dw2.as_mut_ptr().add(k * H1 + half), H1, &acc);
            }
        }
        // ∂W₁ᵀ[i][j] += Σ_r x[r][i] ∂h₁[r][j].
        for i in (0..IN_PAIRS).step_by(2) {
            for half in [0, H1 / 2] {
                let acc = outer::<2, 4>(x.add(i), XP, dh1.add(half), H1);
                add_to(s.dw1t.as_mut_ptr().add(i * H1 + half), H1, &acc);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::{Packed, Sums, Tile};

    pub fn available() -> bool {
        false
    }

    pub unsafe fn forward_tile(_: &Packed, _: &mut Tile) {
        unreachable!("the fused experts run only where `available()`")
    }

    pub unsafe fn backward_tile(_: &Packed, _: &mut Tile, _: &mut Sums<f32>) {
        unreachable!("the fused experts run only where `available()`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Normal values (Box–Muller) from the test's own stream, times `scale`.
    fn normal(rng: &mut Rng, shape: &[i64], scale: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v) = (1.0 - rng.uniform(), rng.uniform());
                (scale * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        Tensor::from_slice(&v).reshape(shape)
    }

    /// Five experts' MLP tensors at PyTorch's initial scale (biases larger, so that some
    /// hidden units are off for some rows and on for others), every one needing a gradient;
    /// K-batched (a leading axis of `samples`) unless `samples` is 0.
    fn params(rng: &mut Rng, kind: Kind, samples: i64) -> Params {
        let mut p = Params::new();
        for e in 0..5 {
            for (name, shape) in NAMES.iter().zip(shapes()) {
                let fan_in = *shape.last().unwrap() as f64;
                let shape = if samples > 0 {
                    [vec![samples], shape].concat()
                } else {
                    shape
                };
                let t = normal(rng, &shape, 1.0 / fan_in.sqrt());
                let name = format!("rel.experts.{e}.{name}");
                p.insert(&name, t.to_kind(kind).set_requires_grad(true));
            }
        }
        p
    }

    /// The same parameters in `kind`, fresh leaves.
    fn copy_as(p: &Params, kind: Kind) -> Params {
        let mut q = Params::new();
        for (name, t) in p.iter() {
            q.insert(
                name,
                t.detach().to_kind(kind).copy().set_requires_grad(true),
            );
        }
        q
    }

    /// Layer `j` of expert `e` (of sample `k` when K-batched) on `h`.
    fn layer(p: &Params, e: usize, j: usize, k: Option<i64>, h: &Tensor) -> Tensor {
        let get = |n: &str| {
            let t = p.get(&format!("rel.experts.{e}.mlp.{j}.{n}")).unwrap();
            k.map_or(t.shallow_clone(), |k| t.select(0, k))
        };
        h.linear(&get("weight"), Some(&get("bias")))
    }

    /// The samples of `p`: `[None]` for plain weights, `Some(k)` for each of K-batched ones.
    fn samples_of(p: &Params) -> Vec<Option<i64>> {
        let probe = p.get("rel.experts.0.mlp.0.weight").unwrap();
        match probe.dim() {
            3 => (0..probe.size()[0]).map(Some).collect(),
            _ => vec![None],
        }
    }

    /// libtorch's path: each expert's MLP on each sample's rows, sample-major, then
    /// expert-major `(K·5·R/K, 1)`.
    fn reference(p: &Params, x: &Tensor) -> Tensor {
        let samples = samples_of(p);
        let rows = x.reshape([samples.len() as i64, -1, IN as i64]);
        let mut outs = Vec::new();
        for (i, &k) in samples.iter().enumerate() {
            let rows = rows.get(i as i64);
            for e in 0..5 {
                let h = layer(p, e, 0, k, &rows).relu();
                outs.push(layer(p, e, 2, k, &layer(p, e, 1, k, &h).relu()));
            }
        }
        Tensor::cat(&outs, 0)
    }

    /// Rows `(n, 9)` drawn so that no hidden unit of any expert lies within 1e-5 of its
    /// ReLU's kink (in f64): there f32 rounding, on either path, may switch the unit, and the
    /// input's gradient then differs by the unit's whole share (one seed here drew a unit at
    /// 5.8e-8, and the two f32 paths rounded it to opposite sides).
    fn rows_away_from_kinks(rng: &mut Rng, truth: &Params, n: i64) -> Tensor {
        let mut rows = normal(rng, &[n, IN as i64], 1.0);
        let samples = samples_of(truth);
        loop {
            let x = rows
                .to_kind(Kind::Double)
                .reshape([samples.len() as i64, -1, IN as i64]);
            let mut near = Vec::new();
            for (i, &k) in samples.iter().enumerate() {
                let x = x.get(i as i64);
                let mut here = Tensor::zeros([x.size()[0]], (Kind::Bool, Device::Cpu));
                for e in 0..5 {
                    let a1 = layer(truth, e, 0, k, &x).detach();
                    let a2 = layer(truth, e, 1, k, &a1.relu()).detach();
                    for a in [a1, a2] {
                        here = here.logical_or(&a.abs().lt(1e-5).any_dim(1, false));
                    }
                }
                near.push(here);
            }
            let near = Tensor::cat(&near, 0);
            if near.sum(Kind::Int64).int64_value(&[]) == 0 {
                return rows;
            }
            let fresh = normal(rng, &[n, IN as i64], 1.0);
            rows = fresh.where_self(&near.unsqueeze(1), &rows);
        }
    }

    /// max |t − truth| / max |truth|.
    fn error(t: &Tensor, truth: &Tensor) -> f64 {
        let t = t.to_kind(Kind::Double);
        let scale = truth.abs().max().double_value(&[]).max(1e-300);
        (t - truth).abs().max().double_value(&[]) / scale
    }

    /// The fused experts and libtorch's f32 path on the same rows, parameters and output
    /// gradient, each against the same computation in f64: the outputs, every parameter's
    /// gradient and the input's (through a transposed view, as the model passes it). The fused
    /// kernel must be as close to the f64 result as libtorch's path (within 2×) or closer than
    /// 1e-6, and never off by more than 1e-5.
    fn compare(shape: [i64; 4], samples: i64, seed: u64) {
        let mut rng = Rng::new(seed).fork("experts");
        let fused = params(&mut rng, Kind::Float, samples);
        let (libtorch, truth) = (copy_as(&fused, Kind::Float), copy_as(&fused, Kind::Double));
        let [b, s, d, n] = shape;
        let rows = b * s * d;
        // The input as the model has it: a transposed view of something that needs a gradient.
        let leaf = rows_away_from_kinks(&mut rng, &truth, rows)
            .reshape([b, s, d, n])
            .transpose(2, 3)
            .contiguous();
        let g = normal(&mut rng, &[5 * rows, 1], 1.0);
        let input = |kind: Kind| leaf.to_kind(kind).copy().set_requires_grad(true);
        let (x64, x32, xf) = (input(Kind::Double), input(Kind::Float), input(Kind::Float));

        let want = reference(&truth, &x64.transpose(2, 3));
        (&want * g.to_kind(Kind::Double))
            .sum(Kind::Double)
            .backward();
        let plain = reference(&libtorch, &x32.transpose(2, 3));
        (&plain * &g).sum(Kind::Float).backward();
        let (got, owed) = crate::optim::deferring(|| {
            let y = experts_train(&fused, 5, &[64, 32], &xf.transpose(2, 3))
                .unwrap()
                .expect("the fused kernel applies");
            (&y * &g).sum(Kind::Float).backward();
            y
        });
        assert_eq!(owed.len(), 1, "one deferred pass");
        assert!(!xf.grad().defined(), "the input's gradient waits for it");
        owed.apply().unwrap();

        let check = |what: &str, ours: &Tensor, theirs: &Tensor, exact: &Tensor| {
            assert_eq!(ours.size(), exact.size(), "{what}");
            let (e_ours, e_theirs) = (error(ours, exact), error(theirs, exact));
            assert!(
                e_ours <= 1e-5 && (e_ours <= 2.0 * e_theirs || e_ours <= 1e-6),
                "{what}: fused off by {e_ours:e}, libtorch's f32 path by {e_theirs:e}"
            );
        };
        check("output", &got, &plain, &want);
        check("input gradient", &xf.grad(), &x32.grad(), &x64.grad());
        for (name, t) in truth.iter() {
            let grad = |p: &Params| p.get(name).unwrap().grad();
            check(name, &grad(&fused), &grad(&libtorch), &t.grad());
        }
    }

    #[test]
    fn the_fused_experts_equal_libtorchs_mlps_at_the_models_size() {
        for seed in 0..4 {
            compare([32, 8, 80, 9], 0, seed);
        }
    }

    /// Mask training's case: K = 4 samples of the weights, each on its own K-th of the batch.
    #[test]
    fn the_fused_experts_equal_libtorchs_mlps_with_k_batched_weights() {
        for seed in 0..3 {
            compare([32, 8, 80, 9], 4, seed);
            compare([6, 8, 13, 9], 2, seed);
        }
    }

    #[test]
    fn the_fused_experts_handle_partial_tiles_and_fewer_rows_than_threads() {
        for seed in 0..6 {
            compare([1, 1, 7, 9], 0, seed);
            compare([3, 8, 13, 9], 0, seed);
        }
    }

    /// A NaN input reaches the output, as through libtorch's ReLU (so a diverging run is caught
    /// by the loss check instead of being zeroed inside the kernel).
    #[test]
    fn a_nan_input_row_gives_nan_outputs() {
        let p = params(&mut Rng::new(4), Kind::Float, 0);
        let x = Tensor::zeros([1, 1, 3, 9], (Kind::Float, Device::Cpu));
        let _ = x.get(0).get(0).get(1).get(4).fill_(f64::NAN);
        let (y, owed) = crate::optim::deferring(|| experts_train(&p, 5, &[64, 32], &x).unwrap());
        let y = y.expect("the kernel applies").reshape([5, 3]);
        assert_eq!(owed.len(), 1);
        let nan: Vec<bool> = Vec::try_from(y.isnan().any_dim(0, false)).unwrap();
        assert_eq!(
            nan,
            [false, true, false],
            "only row 1 is NaN, in every expert"
        );
        assert!(bool::try_from(y.get(0).isnan().get(1)).unwrap());
    }

    #[test]
    fn outside_a_deferral_scope_or_with_other_widths_the_experts_take_libtorchs_path() {
        let p = params(&mut Rng::new(3), Kind::Float, 0);
        let x = Tensor::zeros([2, 8, 4, 9], (Kind::Float, Device::Cpu));
        assert!(experts_train(&p, 5, &[64, 32], &x).unwrap().is_none());
        let (y, owed) =
            crate::optim::deferring(|| experts_train(&p, 5, &[64, 16], &x).unwrap().is_none());
        assert!(y && owed.is_empty());
    }
}
