//! Graph modularity of a network's weights (toumei / Hod et al.; `../shared/specs/graph-modularity.md`).
//!
//! Nodes are units (MLP) or channels (CNN), one layer after another; an undirected edge joins
//! consecutive layers with weight `|w|` (CNN: the induced 1-norm of the `k×k` kernel slice, with
//! a following BatchNorm folded in as `γ/√(σ²+ε)` per output channel). Spectral clustering uses
//! the `k` smallest eigenvectors of `L_sym = I − D^{-½} A D^{-½}`, embeds `Y = D^{-½} U` (as
//! sklearn does, no row normalisation) and runs seeded k-means++ with restarts. The partition is
//! scored by Newman's weighted modularity `Q_γ` and the normalised cut, and both are compared
//! with a layer-wise shuffle null model (z-scores; right-tail p for Q, left-tail p for the n-cut).
//! [`modularity_sweep`] repeats this over several `k` against the same shuffled graphs, and
//! [`WeightGraph::from_scl_masked`] builds the graph of the weights one binary mask keeps.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::masking::Mask;
use crate::model::{Params, SclModel, SclVariant};
use crate::rng::Rng;
use crate::{Error, Result};

/// A weight graph: dense symmetric adjacency (f64, CPU) and the layer of every node.
#[derive(Debug)]
pub struct WeightGraph {
    /// `(N, N)` non-negative, symmetric, zero diagonal.
    pub adjacency: Tensor,
    /// Nodes per layer, input layer first.
    pub layer_sizes: Vec<usize>,
    /// Block `l` joins layer `l` (rows) to layer `l+1` (columns): `(n_l, n_{l+1})`.
    blocks: Vec<Tensor>,
}

impl WeightGraph {
    /// The channel graph of an SCL's vision conv stack, BatchNorm folded (what `avr modularity
    /// --ckpt` measures).
    pub fn from_scl(model: &SclModel) -> Result<Self> {
        Self::from_scl_params(&model.variant, &model.params)
    }

    /// The channel graph of the SCL vision stack restricted to the weights `mask` keeps: every
    /// masked tensor is multiplied by the mask's binary form ([`Mask::apply`]) before the graph
    /// is built, so a `(C_in, C_out)` edge whose whole kernel slice is removed has weight 0, and
    /// a masked BatchNorm γ of 0 cuts its channel off from the next layer. BatchNorm running
    /// statistics are never masked. A mask of another model is refused ([`Mask::check_fits`]).
    pub fn from_scl_masked(model: &SclModel, mask: &Mask) -> Result<Self> {
        Self::from_scl_params(&model.variant, &mask.apply(&model.params, false)?)
    }

    /// [`WeightGraph::from_scl`] on `params` (the model's own, or masked ones).
    fn from_scl_params(variant: &SclVariant, params: &Params) -> Result<Self> {
        let p = |name: String| params.get(&name).map(|t| t.shallow_clone());
        let layers = match variant {
            SclVariant::Seed(cfg) => {
                let convs = cfg.conv_channels.len() - 1;
                (0..convs)
                    .map(|i| {
                        let bn = format!("vision.net.{}", 2 * i + 1);
                        let folded = match i + 1 < convs {
                            true => {
                                Some((p(format!("{bn}.weight"))?, p(format!("{bn}.running_var"))?))
                            }
                            false => None,
                        };
                        Ok((p(format!("vision.net.{}.weight", 2 * i))?, folded))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            SclVariant::Official(cfg) => (0..cfg.channels.len())
                .map(|i| {
                    let bn = format!("visual.bn.{i}");
                    let folded =
                        Some((p(format!("{bn}.weight"))?, p(format!("{bn}.running_var"))?));
                    Ok((p(format!("visual.conv.{i}.weight"))?, folded))
                })
                .collect::<Result<Vec<_>>>()?,
        };
        WeightGraph::from_convs(&layers)
    }

    /// Builds the chain graph from non-negative blocks `(n_l, n_{l+1})`.
    pub fn from_blocks(blocks: Vec<Tensor>) -> Result<Self> {
        if blocks.is_empty() {
            return Err(Error::NotEnough("weight graph: no layers".into()));
        }
        if let Some((l, b)) = blocks.iter().enumerate().find(|(_, b)| b.dim() != 2) {
            return Err(Error::InputShape(format!(
                "weight graph: layer {l} has shape {:?}, expected a 2-D block",
                b.size()
            )));
        }
        let mut sizes = vec![blocks[0].size()[0] as usize];
        for (l, b) in blocks.iter().enumerate() {
            let s = b.size();
            if s.len() != 2 || s[0] as usize != *sizes.last().unwrap() {
                return Err(Error::InputShape(format!(
                    "weight graph: layer {l} has shape {s:?}, which does not chain onto {} units",
                    sizes.last().unwrap()
                )));
            }
            sizes.push(s[1] as usize);
        }
        let n: usize = sizes.iter().sum();
        let adjacency = Tensor::zeros([n as i64, n as i64], (Kind::Double, Device::Cpu));
        let mut start = 0i64;
        let blocks: Vec<Tensor> = blocks
            .into_iter()
            .map(|b| b.to_device(Device::Cpu).to_kind(Kind::Double).abs())
            .collect();
        for (l, b) in blocks.iter().enumerate() {
            let (rows, cols) = (sizes[l] as i64, sizes[l + 1] as i64);
            adjacency
                .narrow(0, start, rows)
                .narrow(1, start + rows, cols)
                .copy_(b);
            adjacency
                .narrow(0, start + rows, cols)
                .narrow(1, start, rows)
                .copy_(&b.tr());
            start += rows;
        }
        Ok(WeightGraph {
            adjacency,
            layer_sizes: sizes,
            blocks,
        })
    }

    /// MLP graph from `Linear` weights `[out, in]`, in order (biases ignored).
    pub fn from_mlp(weights: &[Tensor]) -> Result<Self> {
        if let Some((l, w)) = weights.iter().enumerate().find(|(_, w)| w.dim() != 2) {
            return Err(Error::InputShape(format!(
                "weight graph: Linear weight {l} has shape {:?}, expected [out, in]",
                w.size()
            )));
        }
        Self::from_blocks(weights.iter().map(|w| w.abs().tr()).collect())
    }

    /// CNN channel graph from conv weights `[C_out, C_in, k, k]`, each with an optional
    /// BatchNorm `(γ, running_var)` after it (folded, ε = 1e-5).
    pub fn from_convs(convs: &[(Tensor, Option<(Tensor, Tensor)>)]) -> Result<Self> {
        let blocks = convs
            .iter()
            .map(|(w, bn)| {
                // Induced 1-norm of each (k_h, k_w) slice: max over columns of the absolute column sums.
                let mut block = w
                    .abs()
                    .sum_dim_intlist([2i64].as_slice(), false, Kind::Double)
                    .amax([2], false); // (C_out, C_in)
                if let Some((gamma, var)) = bn {
                    let scale = (gamma.to_kind(Kind::Double)
                        / (var.to_kind(Kind::Double) + 1e-5).sqrt())
                    .abs();
                    block *= scale.unsqueeze(1);
                }
                block.tr()
            })
            .collect();
        Self::from_blocks(blocks)
    }

    /// Total number of nodes `N` (units or channels over all layers, input layer included).
    pub fn num_nodes(&self) -> usize {
        self.layer_sizes.iter().sum()
    }

    /// The same graph with the entries of every layer block permuted at random (the `layer`
    /// null model: keeps each layer's weight distribution, destroys structure).
    pub fn shuffled(&self, rng: &mut Rng) -> Result<WeightGraph> {
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let perm = Tensor::from_slice(
                    &rng.permutation(b.numel())
                        .iter()
                        .map(|&i| i as i64)
                        .collect::<Vec<_>>(),
                );
                b.flatten(0, -1).index_select(0, &perm).reshape(b.size())
            })
            .collect();
        Self::from_blocks(blocks)
    }
}

/// A planted-partition MLP: `layers` weight matrices of `width × width`, unit `i` in group
/// `i mod groups`, weight `a` within a group and `b` across (the spec's known-answer graph).
pub fn planted_mlp(layers: usize, width: usize, groups: usize, a: f32, b: f32) -> Vec<Tensor> {
    let w: Vec<f32> = (0..width * width)
        .map(|x| {
            if (x / width) % groups == (x % width) % groups {
                a
            } else {
                b
            }
        })
        .collect();
    let w = Tensor::from_slice(&w).reshape([width as i64, width as i64]);
    (0..layers).map(|_| w.shallow_clone()).collect()
}

/// Settings of [`graph_modularity`] and [`modularity_sweep`] with documented defaults
/// (`k` 8, γ 1, 25 restarts, 100 shuffles, seed 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModularityConfig {
    /// Number of clusters (default 8, toumei's).
    pub k: usize,
    /// Resolution γ of Newman's Q (default 1).
    pub gamma: f64,
    /// k-means restarts; the lowest inertia wins (default 25).
    pub restarts: usize,
    /// Shuffled networks for the null model (default 100; 0 = no null model, which is much
    /// faster: every shuffle is clustered like the network itself).
    pub shuffles: usize,
    /// Seed for k-means and the shuffles (default 0).
    pub seed: u64,
}

impl Default for ModularityConfig {
    fn default() -> Self {
        ModularityConfig {
            k: 8,
            gamma: 1.0,
            restarts: 25,
            shuffles: 100,
            seed: 0,
        }
    }
}

/// Result of [`graph_modularity`]; `--json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModularityReport {
    /// Newman's weighted modularity `Q_γ` of the spectral partition (higher = more modular).
    pub q: f64,
    /// Normalised cut of the same partition (lower = cleaner split).
    pub ncut: f64,
    /// Cluster label of every node, layer-major.
    pub clusters: Vec<usize>,
    /// Number of clusters asked for ([`ModularityConfig::k`]).
    pub k: usize,
    /// Resolution γ the modularity was scored with.
    pub gamma: f64,
    /// Number of nodes in the graph (the sum of `layer_sizes`).
    pub nodes: usize,
    /// Nodes per layer, input layer first.
    pub layer_sizes: Vec<usize>,
    /// Mean `Q_γ` of the layer-shuffled networks; `None` without shuffles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q_null_mean: Option<f64>,
    /// Population standard deviation of the shuffled networks' `Q_γ`; `None` without shuffles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q_null_std: Option<f64>,
    /// z-score `(Q − mean) / std` against the null model; when the std is 0 (or within
    /// rounding, `≤ 1e-12 · max(|mean|, |Q|)`): `±∞` by the sign of `Q − mean`, 0 when they
    /// agree (JSON writes infinities as `null`); `None` without shuffles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    /// Right-tail p-value `(1 + #{Q_s ≥ Q}) / (n + 1)` (Q higher than chance; ties count
    /// against significance); `None` without shuffles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Mean n-cut of the layer-shuffled networks (the same shuffles as Q's null, each with its
    /// own spectral partition); `None` without shuffles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncut_null_mean: Option<f64>,
    /// Population standard deviation of the shuffled networks' n-cut; `None` without shuffles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncut_null_std: Option<f64>,
    /// z-score `(n-cut − mean) / std` against the null model (negative = cleaner split than
    /// chance; the std-0 rule of [`ModularityReport::z`]); `None` without shuffles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncut_z: Option<f64>,
    /// Left-tail p-value `(1 + #{ncut_s ≤ ncut}) / (n + 1)` (n-cut lower than chance; ties count
    /// against significance); `None` without shuffles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncut_p: Option<f64>,
    /// Number of shuffled networks in the null model (0 = none).
    pub shuffles: usize,
}

/// Result of [`modularity_sweep`]: one [`ModularityReport`] per `k`, in the order asked for,
/// all against the same shuffled networks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModularitySweep {
    /// One report per `k`.
    pub points: Vec<ModularityReport>,
}

impl ModularitySweep {
    /// The point with the largest Q z-score (the first of equal ones); `None` without shuffles
    /// or points.
    pub fn best(&self) -> Option<&ModularityReport> {
        let mut best: Option<(&ModularityReport, f64)> = None;
        for point in &self.points {
            if let Some(z) = point.z.filter(|z| !z.is_nan()) {
                if best.is_none_or(|(_, b)| z > b) {
                    best = Some((point, z));
                }
            }
        }
        best.map(|(point, _)| point)
    }

    /// The `k` with the largest Q z-score ([`ModularitySweep::best`]).
    pub fn best_k(&self) -> Option<usize> {
        self.best().map(|point| point.k)
    }
}

/// Degrees with isolated nodes counted as 1 (as scipy's normalised Laplacian does).
fn safe_sqrt_degrees(adjacency: &Tensor) -> Tensor {
    let d = adjacency.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    let ones = Tensor::ones_like(&d);
    d.where_self(&d.gt(0.0), &ones).sqrt()
}

/// The spectral embedding `Y = D^{-½} U_k` (`(N, k)`), `U_k` the k smallest eigenvectors of `L_sym`.
pub fn spectral_embedding(adjacency: &Tensor, k: usize) -> Result<Tensor> {
    let n = adjacency.size()[0];
    Ok(full_embedding(adjacency)?.narrow(1, 0, k.min(n as usize) as i64))
}

/// `D^{-½} U` with all `N` eigenvectors of `L_sym` (ascending eigenvalues): the first `k`
/// columns are [`spectral_embedding`]'s for every `k` (one eigendecomposition per graph).
fn full_embedding(adjacency: &Tensor) -> Result<Tensor> {
    let n = adjacency.size()[0];
    let inv_sqrt = safe_sqrt_degrees(adjacency).reciprocal();
    let normalised = adjacency * inv_sqrt.unsqueeze(1) * inv_sqrt.unsqueeze(0);
    let laplacian = Tensor::eye(n, (Kind::Double, Device::Cpu)) - normalised;
    let (_values, vectors) = laplacian.f_linalg_eigh("L")?; // ascending eigenvalues
    Ok(vectors * inv_sqrt.unsqueeze(1))
}

/// A graph's full spectral embedding, row-major on the host, for clustering at several `k`.
struct Embedding {
    data: Vec<f64>,
    nodes: usize,
}

impl Embedding {
    fn of(adjacency: &Tensor) -> Result<Self> {
        let y = full_embedding(adjacency)?;
        let nodes = y.size()[0] as usize;
        let data = Vec::<f64>::try_from(y.contiguous().flatten(0, -1))?;
        Ok(Embedding { data, nodes })
    }

    /// k-means on the first `k` coordinates (`1 ≤ k ≤ nodes`, checked by the callers).
    fn cluster(&self, k: usize, restarts: usize, rng: &mut Rng) -> Vec<usize> {
        let first: Vec<f64> = self
            .data
            .chunks(self.nodes.max(1))
            .flat_map(|row| row[..k].iter().copied())
            .collect();
        kmeans(&first, k, k, restarts, rng)
    }
}

/// `Ok` when `k` clusters fit a graph of `nodes` nodes, else the error naming `k`.
fn check_k(k: usize, nodes: usize) -> Result<()> {
    match k == 0 || k > nodes {
        true => Err(Error::Config(format!(
            "spectral clustering: k = {k} clusters, but it must lie between 1 and the graph's {nodes} nodes"
        ))),
        false => Ok(()),
    }
}

/// Points stored row-major in one buffer (cache-friendly k-means).
struct Points<'a> {
    data: &'a [f64],
    dim: usize,
}

impl Points<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++ (greedy, `2 + ⌊ln k⌋` candidates) + Lloyd, best of `restarts` by inertia.
/// `data` holds `n` points of `dim` coordinates, row-major.
pub fn kmeans(data: &[f64], dim: usize, k: usize, restarts: usize, rng: &mut Rng) -> Vec<usize> {
    let points = Points { data, dim };
    let n = points.len();
    if k >= n {
        return (0..n).collect();
    }
    let mut best: Option<(f64, Vec<usize>)> = None;
    for _ in 0..restarts.max(1) {
        let centres = kmeans_pp(&points, k, rng);
        let (inertia, labels) = lloyd(&points, centres);
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, labels));
        }
    }
    best.unwrap().1
}

fn kmeans_pp(points: &Points, k: usize, rng: &mut Rng) -> Vec<f64> {
    let n = points.len();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = rng.below(n);
    let mut centres = points.row(first).to_vec();
    let mut closest: Vec<f64> = (0..n)
        .map(|i| dist2(points.row(i), points.row(first)))
        .collect();
    let mut updated = vec![0.0; n];
    let mut best_updated = vec![0.0; n];
    for _ in 1..k {
        let total: f64 = closest.iter().sum();
        let mut best: Option<(f64, usize)> = None;
        for _ in 0..trials {
            let candidate = if total > 0.0 {
                let mut target = rng.uniform() * total;
                closest
                    .iter()
                    .position(|&d| {
                        target -= d;
                        target < 0.0
                    })
                    .unwrap_or(n - 1)
            } else {
                rng.below(n)
            };
            let c = points.row(candidate);
            let mut potential = 0.0;
            for i in 0..n {
                updated[i] = closest[i].min(dist2(points.row(i), c));
                potential += updated[i];
            }
            if best.is_none_or(|(b, _)| potential < b) {
                best = Some((potential, candidate));
                std::mem::swap(&mut updated, &mut best_updated);
            }
        }
        let (_, chosen) = best.unwrap();
        centres.extend_from_slice(points.row(chosen));
        std::mem::swap(&mut closest, &mut best_updated);
    }
    centres
}

fn lloyd(points: &Points, mut centres: Vec<f64>) -> (f64, Vec<usize>) {
    let (n, dim) = (points.len(), points.dim);
    let k = centres.len() / dim;
    let mut labels = vec![usize::MAX; n];
    let nearest = |p: &[f64], centres: &[f64]| {
        (0..k)
            .map(|c| (dist2(p, &centres[c * dim..(c + 1) * dim]), c))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap()
    };
    for _ in 0..300 {
        let mut changed = false;
        for (i, label) in labels.iter_mut().enumerate() {
            let (_, c) = nearest(points.row(i), &centres);
            changed |= *label != c;
            *label = c;
        }
        if !changed {
            break;
        }
        let mut sums = vec![0.0; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &c) in labels.iter().enumerate() {
            counts[c] += 1;
            sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(points.row(i))
                .for_each(|(s, x)| *s += x);
        }
        for c in 0..k {
            if counts[c] > 0 {
                for d in 0..dim {
                    centres[c * dim + d] = sums[c * dim + d] / counts[c] as f64;
                }
            }
        }
    }
    let inertia = (0..n).map(|i| nearest(points.row(i), &centres).0).sum();
    (inertia, labels)
}

/// Spectral clustering of a graph into `k` clusters (labels layer-major).
pub fn spectral_clustering(
    adjacency: &Tensor,
    k: usize,
    restarts: usize,
    rng: &mut Rng,
) -> Result<Vec<usize>> {
    let nodes = adjacency.size().first().copied().unwrap_or(0) as usize;
    check_k(k, nodes)?;
    Ok(Embedding::of(adjacency)?.cluster(k, restarts, rng))
}

/// Per-cluster intra weight (ordered pairs) and volume.
fn cluster_sums(adjacency: &Tensor, labels: &[usize]) -> (Vec<f64>, Vec<f64>, f64) {
    let k = labels.iter().max().map_or(0, |m| m + 1) as i64;
    let idx = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    let h = idx.one_hot(k).to_kind(Kind::Double); // (N, k)
    let intra = h.tr().matmul(adjacency).matmul(&h).diagonal(0, 0, 1);
    let degrees = adjacency.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    let volume = h.tr().matmul(&degrees.unsqueeze(1)).squeeze_dim(1);
    let two_m = degrees.sum(Kind::Double).double_value(&[]);
    (
        Vec::<f64>::try_from(intra).unwrap_or_default(),
        Vec::<f64>::try_from(volume).unwrap_or_default(),
        two_m,
    )
}

/// Newman's weighted modularity `Q_γ = Σ_c [Σ_{i,j∈c} A_ij / 2m − γ (d_c / 2m)²]`.
pub fn modularity(adjacency: &Tensor, labels: &[usize], gamma: f64) -> f64 {
    let (intra, volume, two_m) = cluster_sums(adjacency, labels);
    modularity_from_sums(&intra, &volume, two_m, gamma)
}

fn modularity_from_sums(intra: &[f64], volume: &[f64], two_m: f64, gamma: f64) -> f64 {
    if two_m <= 0.0 {
        return 0.0;
    }
    intra
        .iter()
        .zip(volume)
        .map(|(l, d)| l / two_m - gamma * (d / two_m).powi(2))
        .sum()
}

/// Normalised cut `Σ_c cut(c) / (vol(c) + 1e-8)`.
pub fn ncut(adjacency: &Tensor, labels: &[usize]) -> f64 {
    let (intra, volume, _) = cluster_sums(adjacency, labels);
    ncut_from_sums(&intra, &volume)
}

fn ncut_from_sums(intra: &[f64], volume: &[f64]) -> f64 {
    intra
        .iter()
        .zip(volume)
        .map(|(l, v)| (v - l) / (v + 1e-8))
        .sum()
}

/// `(Q_γ, n-cut)` of one partition (one pass over the cluster sums).
fn scores(adjacency: &Tensor, labels: &[usize], gamma: f64) -> (f64, f64) {
    let (intra, volume, two_m) = cluster_sums(adjacency, labels);
    (
        modularity_from_sums(&intra, &volume, two_m, gamma),
        ncut_from_sums(&intra, &volume),
    )
}

/// Clusters `graph`, scores the partition and, with `shuffles > 0`, compares Q and the n-cut
/// with the layer-shuffle null model (`p = (1 + #{Q_s ≥ Q}) / (n + 1)`,
/// `ncut_p = (1 + #{ncut_s ≤ ncut}) / (n + 1)`, z-scores with the population sd).
pub fn graph_modularity(graph: &WeightGraph, cfg: &ModularityConfig) -> Result<ModularityReport> {
    check_k(cfg.k, graph.num_nodes())?;
    let mut points = sweep(graph, &[cfg.k], cfg)?;
    Ok(points.remove(0))
}

/// [`graph_modularity`] at every `k` of `ks` (in that order) against the **same** shuffled
/// networks: point `i` equals `graph_modularity` with `k = ks[i]` and the same seed, but each
/// graph's eigendecomposition is done once for all `k`. `cfg.k` is ignored. An empty `ks`, or
/// a `k` of 0 or above the number of nodes, is an error naming it.
pub fn modularity_sweep(
    graph: &WeightGraph,
    ks: &[usize],
    cfg: &ModularityConfig,
) -> Result<ModularitySweep> {
    if ks.is_empty() {
        return Err(Error::NotEnough(
            "k sweep: no k given (the list of cluster counts is empty)".into(),
        ));
    }
    let nodes = graph.num_nodes();
    if let Some(&bad) = ks.iter().find(|&&k| k == 0 || k > nodes) {
        return Err(Error::Config(format!(
            "k sweep {ks:?}: k = {bad} clusters, but every k must lie between 1 and the graph's {nodes} nodes"
        )));
    }
    Ok(ModularitySweep {
        points: sweep(graph, ks, cfg)?,
    })
}

/// Mean, population sd, z-score and p-value of `observed` against `null`; `higher` picks the
/// tail (`true`: `#{s ≥ observed}`, `false`: `#{s ≤ observed}`). An sd within rounding
/// (`≤ 1e-12 · max(|mean|, |observed|)`) counts as 0: z is then `±∞` by the sign of
/// `observed − mean`, or 0 when they agree to that precision.
fn null_test(observed: f64, null: &[f64], higher: bool) -> (f64, f64, f64, f64) {
    let n = null.len() as f64;
    let mean = null.iter().sum::<f64>() / n;
    let std = (null.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    // A spread within rounding is no spread: the layer shuffle keeps the score of every
    // layer-aligned partition exactly, so when all shuffles find one (small k), their scores
    // differ only in the last bits and `(observed − mean) / std` would be a meaningless ±1e11.
    let rounding = 1e-12 * mean.abs().max(observed.abs());
    let z = if std > rounding {
        (observed - mean) / std
    } else if observed - mean > rounding {
        f64::INFINITY
    } else if mean - observed > rounding {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    let extreme = null
        .iter()
        .filter(|&&s| if higher { s >= observed } else { s <= observed })
        .count();
    (mean, std, z, (1 + extreme) as f64 / (n + 1.0))
}

/// The reports at every `k` of `ks` (each already checked to lie in `1..=nodes`). Each `k` has
/// its own k-means stream forked from the seed exactly as [`graph_modularity`] forks it, and the
/// shuffles come from one `shuffle` stream, so every `k` sees the same shuffled graphs.
fn sweep(
    graph: &WeightGraph,
    ks: &[usize],
    cfg: &ModularityConfig,
) -> Result<Vec<ModularityReport>> {
    let root = Rng::new(cfg.seed);
    let mut rngs: Vec<Rng> = ks.iter().map(|_| root.fork("kmeans")).collect();
    let embedding = Embedding::of(&graph.adjacency)?;
    let mut reports: Vec<ModularityReport> = ks
        .iter()
        .zip(rngs.iter_mut())
        .map(|(&k, rng)| {
            let clusters = embedding.cluster(k, cfg.restarts, rng);
            let (q, ncut) = scores(&graph.adjacency, &clusters, cfg.gamma);
            ModularityReport {
                q,
                ncut,
                clusters,
                k,
                gamma: cfg.gamma,
                nodes: graph.num_nodes(),
                layer_sizes: graph.layer_sizes.clone(),
                q_null_mean: None,
                q_null_std: None,
                z: None,
                p: None,
                ncut_null_mean: None,
                ncut_null_std: None,
                ncut_z: None,
                ncut_p: None,
                shuffles: cfg.shuffles,
            }
        })
        .collect();
    if cfg.shuffles == 0 {
        return Ok(reports);
    }
    let mut shuffle_rng = root.fork("shuffle");
    let mut null_q = vec![Vec::with_capacity(cfg.shuffles); ks.len()];
    let mut null_ncut = vec![Vec::with_capacity(cfg.shuffles); ks.len()];
    for _ in 0..cfg.shuffles {
        let shuffled = graph.shuffled(&mut shuffle_rng)?;
        let embedding = Embedding::of(&shuffled.adjacency)?;
        for (i, &k) in ks.iter().enumerate() {
            let labels = embedding.cluster(k, cfg.restarts, &mut rngs[i]);
            let (q, ncut) = scores(&shuffled.adjacency, &labels, cfg.gamma);
            null_q[i].push(q);
            null_ncut[i].push(ncut);
        }
    }
    for (i, report) in reports.iter_mut().enumerate() {
        let (mean, std, z, p) = null_test(report.q, &null_q[i], true);
        (report.q_null_mean, report.q_null_std, report.z, report.p) =
            (Some(mean), Some(std), Some(z), Some(p));
        let (mean, std, z, p) = null_test(report.ncut, &null_ncut[i], false);
        (
            report.ncut_null_mean,
            report.ncut_null_std,
            report.ncut_z,
            report.ncut_p,
        ) = (Some(mean), Some(std), Some(z), Some(p));
    }
    Ok(reports)
}
