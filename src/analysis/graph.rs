//! Graph modularity of a network's weights (toumei / Hod et al.; `../shared/specs/graph-modularity.md`).
//!
//! Nodes are units (MLP) or channels (CNN), one layer after another; an undirected edge joins
//! consecutive layers with weight `|w|` (CNN: the induced 1-norm of the `k×k` kernel slice, with
//! a following BatchNorm folded in as `γ/√(σ²+ε)` per output channel). Spectral clustering uses
//! the `k` smallest eigenvectors of `L_sym = I − D^{-½} A D^{-½}`, embeds `Y = D^{-½} U` (as
//! sklearn does, no row normalisation) and runs seeded k-means++ with restarts. The partition is
//! scored by Newman's weighted modularity `Q_γ` and the normalised cut, and compared with a
//! layer-wise shuffle null model (z-score and right-tail p-value).

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::model::{SclModel, SclVariant};
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
        let p = |name: String| model.params.get(&name).map(|t| t.shallow_clone());
        let layers = match &model.variant {
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
            return Err(Error::Config("weight graph: no layers".into()));
        }
        let mut sizes = vec![blocks[0].size()[0] as usize];
        for (l, b) in blocks.iter().enumerate() {
            let s = b.size();
            if s.len() != 2 || s[0] as usize != *sizes.last().unwrap() {
                return Err(Error::Config(format!(
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

/// Settings of [`graph_modularity`] with documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModularityConfig {
    /// Number of clusters (default 8, toumei's).
    pub k: usize,
    /// Resolution γ of Newman's Q (default 1).
    pub gamma: f64,
    /// k-means restarts; the lowest inertia wins (default 25).
    pub restarts: usize,
    /// Shuffled networks for the null model (default 0 = none).
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
            shuffles: 0,
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
    /// z-score `(Q − mean) / std` against the null model (`+∞` when the std is 0); `None`
    /// without shuffles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    /// Right-tail p-value `(1 + #{Q_s ≥ Q}) / (n + 1)` against the null model; `None` without
    /// shuffles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Number of shuffled networks in the null model (0 = none).
    pub shuffles: usize,
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
    let inv_sqrt = safe_sqrt_degrees(adjacency).reciprocal();
    let normalised = adjacency * inv_sqrt.unsqueeze(1) * inv_sqrt.unsqueeze(0);
    let laplacian = Tensor::eye(n, (Kind::Double, Device::Cpu)) - normalised;
    let (_values, vectors) = laplacian.f_linalg_eigh("L")?; // ascending eigenvalues
    Ok(vectors.narrow(1, 0, k.min(n as usize) as i64) * inv_sqrt.unsqueeze(1))
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
    if k == 0 || k > nodes {
        return Err(Error::Config(format!(
            "spectral clustering: k = {k} clusters, but it must lie between 1 and the graph's {nodes} nodes"
        )));
    }
    let y = spectral_embedding(adjacency, k)?;
    let dim = y.size()[1] as usize;
    let flat: Vec<f64> = Vec::<f64>::try_from(y.contiguous().flatten(0, -1))?;
    Ok(kmeans(&flat, dim, k, restarts, rng))
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
    if two_m <= 0.0 {
        return 0.0;
    }
    intra
        .iter()
        .zip(&volume)
        .map(|(l, d)| l / two_m - gamma * (d / two_m).powi(2))
        .sum()
}

/// Normalised cut `Σ_c cut(c) / (vol(c) + 1e-8)`.
pub fn ncut(adjacency: &Tensor, labels: &[usize]) -> f64 {
    let (intra, volume, _) = cluster_sums(adjacency, labels);
    intra
        .iter()
        .zip(&volume)
        .map(|(l, v)| (v - l) / (v + 1e-8))
        .sum()
}

/// Clusters `graph`, scores the partition and, with `shuffles > 0`, compares Q with the
/// layer-shuffle null model (`p = (1 + #{Q_s ≥ Q}) / (n + 1)`, z with the population sd).
pub fn graph_modularity(graph: &WeightGraph, cfg: &ModularityConfig) -> Result<ModularityReport> {
    let root = Rng::new(cfg.seed);
    let mut rng = root.fork("kmeans");
    let clusters = spectral_clustering(&graph.adjacency, cfg.k, cfg.restarts, &mut rng)?;
    let q = modularity(&graph.adjacency, &clusters, cfg.gamma);
    let mut report = ModularityReport {
        q,
        ncut: ncut(&graph.adjacency, &clusters),
        clusters,
        k: cfg.k,
        gamma: cfg.gamma,
        nodes: graph.num_nodes(),
        layer_sizes: graph.layer_sizes.clone(),
        q_null_mean: None,
        q_null_std: None,
        z: None,
        p: None,
        shuffles: cfg.shuffles,
    };
    if cfg.shuffles > 0 {
        let mut shuffle_rng = root.fork("shuffle");
        let mut null = Vec::with_capacity(cfg.shuffles);
        for _ in 0..cfg.shuffles {
            let shuffled = graph.shuffled(&mut shuffle_rng)?;
            let labels = spectral_clustering(&shuffled.adjacency, cfg.k, cfg.restarts, &mut rng)?;
            null.push(modularity(&shuffled.adjacency, &labels, cfg.gamma));
        }
        let mean = null.iter().sum::<f64>() / null.len() as f64;
        let std = (null.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / null.len() as f64).sqrt();
        report.q_null_mean = Some(mean);
        report.q_null_std = Some(std);
        report.z = Some(if std > 0.0 {
            (q - mean) / std
        } else {
            f64::INFINITY
        });
        report.p =
            Some((1 + null.iter().filter(|&&s| s >= q).count()) as f64 / (null.len() + 1) as f64);
    }
    Ok(report)
}
