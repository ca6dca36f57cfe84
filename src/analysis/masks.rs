//! Metrics over binary masks (deterministic `l > 0`): kept fraction / sparsity, the study's
//! dispersity, overlaps (IoU, IoMin) and the sharing matrix (`avr-seed-study.md` §5).

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::replicates::seed_of;
use crate::display::Table;
use crate::masking::bits::Binarize;
use crate::masking::{check_comparable, Mask, MixedSettings};
use crate::model::Params;
use crate::rng::Rng;
use crate::Result;

/// The sub-network a parameter belongs to (the study's colour groups).
pub fn subnetwork(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// The study's short plot label of each parameter in order: V1…, A1…, FFR1…, R1…, L1… .
pub fn study_labels(names: &[String]) -> Vec<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    names
        .iter()
        .map(|n| {
            let prefix = match subnetwork(n) {
                "vision" => "V",
                "attr_net" => "A",
                "ff_residual" => "FFR",
                "rel_net" => "R",
                "to_logit" => "L",
                other => other,
            };
            let i = match counts.iter_mut().find(|(p, _)| p == prefix) {
                Some((_, c)) => {
                    *c += 1;
                    *c
                }
                None => {
                    counts.push((prefix.to_string(), 1));
                    1
                }
            };
            format!("{prefix}{i}")
        })
        .collect()
}

/// The study's per-tensor dispersity `v_t = (1/n) Σ_j ‖p_j − μ‖² / (‖μ‖² + 1e-12)` over the
/// index coordinates `p_j` of the ones (0 for an empty mask).
pub fn tensor_dispersity(binary: &Tensor) -> f64 {
    let ones = binary.gt(0.0);
    let positions = if ones.dim() == 0 {
        ones.reshape([1]).nonzero()
    } else {
        ones.nonzero()
    };
    let n = positions.size()[0];
    if n == 0 {
        return 0.0;
    }
    let p = positions.to_kind(Kind::Double);
    let mu = p.mean_dim([0i64].as_slice(), true, Kind::Double);
    let spread = (&p - &mu).square().sum(Kind::Double).double_value(&[]) / n as f64;
    spread / (mu.square().sum(Kind::Double).double_value(&[]) + 1e-12)
}

/// One tensor's share of a mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorStat {
    /// The parameter's name (e.g. `vision.net.0.weight`).
    pub name: String,
    /// The study's short plot label ([`study_labels`]: `V1`, `A2`, `FFR1`, …).
    pub label: String,
    /// Scalars the mask keeps in this tensor (entries `> 0`).
    pub kept: i64,
    /// Scalars in the tensor.
    pub numel: i64,
    /// The tensor's dispersity ([`tensor_dispersity`]; 0 when nothing is kept).
    pub dispersity: f64,
}

/// Size and spread of one mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaskStats {
    /// The mask's name (e.g. `SCL_90/squares`).
    pub name: String,
    /// Scalars kept over all masked tensors.
    pub kept: i64,
    /// Scalars in all masked tensors.
    pub total: i64,
    /// `kept / total`, in `[0, 1]` (0 for an empty mask).
    pub kept_fraction: f64,
    /// Percent of zeros (the study's "sparsity").
    pub sparsity: f64,
    /// Mean of the per-tensor dispersities (the study's final metric).
    pub dispersity: f64,
    /// Sum of the per-tensor dispersities (the study's older "Dispersal").
    pub dispersity_sum: f64,
    /// One entry per masked tensor, in the mask's parameter order.
    pub per_tensor: Vec<TensorStat>,
}

/// Stats of the binary masks `binary` (0/1 tensors by name).
pub fn binary_stats(name: &str, binary: &Params) -> MaskStats {
    let labels = study_labels(binary.names());
    let per_tensor: Vec<TensorStat> = binary
        .iter()
        .zip(labels)
        .map(|((n, b), label)| TensorStat {
            name: n.to_string(),
            label,
            kept: b.gt(0.0).sum(Kind::Int64).int64_value(&[]),
            numel: b.numel() as i64,
            dispersity: tensor_dispersity(b),
        })
        .collect();
    let kept: i64 = per_tensor.iter().map(|t| t.kept).sum();
    let total: i64 = per_tensor.iter().map(|t| t.numel).sum();
    let dispersity_sum: f64 = per_tensor.iter().map(|t| t.dispersity).sum();
    MaskStats {
        name: name.to_string(),
        kept,
        total,
        kept_fraction: kept as f64 / total.max(1) as f64,
        sparsity: 100.0 * (total - kept) as f64 / total.max(1) as f64,
        dispersity: dispersity_sum / per_tensor.len().max(1) as f64,
        dispersity_sum,
        per_tensor,
    }
}

/// Stats of a mask's deterministic binary form.
pub fn mask_stats(mask: &Mask) -> MaskStats {
    binary_stats(&mask.name, &mask.binary())
}

impl MaskStats {
    /// Kept scalars per sub-network: `(sub-network, kept, numel)` in order of appearance.
    pub fn per_subnetwork(&self) -> Vec<(String, i64, i64)> {
        let mut out: Vec<(String, i64, i64)> = Vec::new();
        for t in &self.per_tensor {
            let s = subnetwork(&t.name);
            match out.iter_mut().find(|(n, _, _)| n == s) {
                Some(e) => {
                    e.1 += t.kept;
                    e.2 += t.numel;
                }
                None => out.push((s.to_string(), t.kept, t.numel)),
            }
        }
        out
    }

    /// Per-tensor table.
    pub fn table(&self) -> Result<Table> {
        let t = &self.per_tensor;
        let df = df!(
            "tensor" => t.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
            "label" => t.iter().map(|x| x.label.clone()).collect::<Vec<_>>(),
            "kept" => t.iter().map(|x| x.kept).collect::<Vec<_>>(),
            "numel" => t.iter().map(|x| x.numel).collect::<Vec<_>>(),
            "kept_%" => t.iter().map(|x| 100.0 * x.kept as f64 / x.numel as f64).collect::<Vec<_>>(),
            "dispersity" => t.iter().map(|x| x.dispersity).collect::<Vec<_>>()
        )?;
        Ok(Table::new(df).with_caption(format!(
            "{}: kept {} of {} ({:.2} %), dispersity {:.4}",
            self.name,
            self.kept,
            self.total,
            100.0 * self.kept_fraction,
            self.dispersity
        )))
    }

    /// Inline display in evcxr: the per-tensor [`table`](Self::table) (the debug form if it
    /// cannot be built).
    pub fn evcxr_display(&self) {
        match self.table() {
            Ok(t) => t.evcxr_display(),
            Err(_) => println!("{self:?}"),
        }
    }
}

/// A summary table of several masks: kept %, sparsity, dispersity, and kept % per sub-network.
pub fn stats_table(stats: &[MaskStats]) -> Result<Table> {
    let mut columns = vec![
        Column::new(
            "mask".into(),
            stats.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "kept".into(),
            stats.iter().map(|s| s.kept).collect::<Vec<_>>(),
        ),
        Column::new(
            "kept_%".into(),
            stats
                .iter()
                .map(|s| 100.0 * s.kept_fraction)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "sparsity_%".into(),
            stats.iter().map(|s| s.sparsity).collect::<Vec<_>>(),
        ),
        Column::new(
            "dispersity".into(),
            stats.iter().map(|s| s.dispersity).collect::<Vec<_>>(),
        ),
    ];
    if let Some(first) = stats.first() {
        for (i, (sub, _, _)) in first.per_subnetwork().iter().enumerate() {
            let values: Vec<f64> = stats
                .iter()
                .map(|s| {
                    s.per_subnetwork()
                        .get(i)
                        .map_or(f64::NAN, |e| 100.0 * e.1 as f64 / e.2 as f64)
                })
                .collect();
            columns.push(Column::new(format!("{sub}_%").into(), values));
        }
    }
    Ok(Table::new(DataFrame::new_infer_height(columns)?))
}

pub use crate::masking::overlap::{overlap, Overlap};

/// The masks of one seed and the weights they all keep (what the study's preprocessing removes
/// from them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedShared {
    /// The seed (`s0`; empty for masks named without one).
    pub seed: String,
    /// How many masks carry it.
    pub masks: usize,
    /// Scalars kept by every one of them.
    pub shared: u64,
}

/// The preprocessing's units: the indices of each seed's masks (`circles-s1` is seed `s1`;
/// names without a seed form one group), seeds in order of first appearance. The study removed
/// the weights kept by all 5 shape masks of its one set of masks; with replicates each seed's
/// masks are such a set. Two masks of one seed are read after both lose their seed's set (the
/// study's rule); two masks of different seeds after both lose what either seed's masks all
/// keep, so the two sides of a pair are always cut alike. Removing only what every mask of
/// every seed keeps would remove less (an AND over more masks) and inflate every overlap
/// against the study's.
pub fn seed_groups(names: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let seed = seed_of(name);
        match groups.iter_mut().find(|(s, _)| s == seed) {
            Some((_, members)) => members.push(i),
            None => groups.push((seed.to_string(), vec![i])),
        }
    }
    groups
}

/// Pairwise overlaps of N masks, in percent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharingMatrix {
    /// The masks' names, in row (and column) order.
    pub names: Vec<String>,
    /// `matrix[i][j]` in percent; symmetric.
    pub matrix: Vec<Vec<f64>>,
    /// How each pair's overlap was normalised (IoMin, the study's, or IoU).
    pub metric: Overlap,
    /// Whether the study's preprocessing came first, per seed (see [`seed_groups`]).
    pub preprocessed: bool,
    /// How many scalars all masks share (of every seed).
    pub shared_by_all: i64,
    /// Per seed: its masks and the scalars they all keep (what the preprocessing removes).
    #[serde(default)]
    pub shared_within_seed: Vec<SeedShared>,
}

/// The sharing matrix of `masks` (deterministic `l > 0`), optionally after the study's
/// preprocessing, per seed ([`seed_groups`]). Masks trained with different settings are
/// refused ([`check_comparable`]); [`sharing_matrix_with`] lets the caller opt in.
pub fn sharing_matrix(masks: &[Mask], metric: Overlap, preprocess: bool) -> Result<SharingMatrix> {
    sharing_matrix_with(masks, metric, preprocess, MixedSettings::Refuse)
}

/// [`sharing_matrix`], saying whether masks of different training settings may be compared.
pub fn sharing_matrix_with(
    masks: &[Mask],
    metric: Overlap,
    preprocess: bool,
    mixed: MixedSettings,
) -> Result<SharingMatrix> {
    check_comparable(masks, mixed)?;
    let names: Vec<String> = masks.iter().map(|m| m.name.clone()).collect();
    super::chance::check_sharing_inputs(&names, preprocess)?;
    // The chance level's counting, on the `l > 0` bits: one implementation of the per-seed
    // preprocessing for the plain matrix and the observed side of the chance level.
    let bits = Mask::bits_of_all(masks, Binarize::Threshold, &mut Rng::new(0))?;
    let groups = seed_groups(&names);
    let (shared_by_all, shared_within_seed) = super::chance::kept_in_common(&bits, &groups);
    Ok(SharingMatrix {
        matrix: super::chance::observed_matrix(&bits, &groups, metric, preprocess),
        names,
        metric,
        preprocessed: preprocess,
        shared_by_all: shared_by_all as i64,
        shared_within_seed,
    })
}

impl SharingMatrix {
    /// Inline display in evcxr: the matrix as a [`table`](Self::table) (the debug form if it
    /// cannot be built).
    pub fn evcxr_display(&self) {
        match self.table() {
            Ok(t) => t.evcxr_display(),
            Err(_) => println!("{self:?}"),
        }
    }

    /// The value for the masks called `a` and `b`.
    pub fn get(&self, a: &str, b: &str) -> Option<f64> {
        let i = self.names.iter().position(|n| n == a)?;
        let j = self.names.iter().position(|n| n == b)?;
        Some(self.matrix[i][j])
    }

    /// As a table (one column per mask).
    pub fn table(&self) -> Result<Table> {
        let mut columns = vec![Column::new("mask".into(), self.names.clone())];
        for (j, name) in self.names.iter().enumerate() {
            columns.push(Column::new(
                name.as_str().into(),
                self.matrix.iter().map(|row| row[j]).collect::<Vec<_>>(),
            ));
        }
        let mut t = Table::new(DataFrame::new_infer_height(columns)?);
        t.float_decimals = 2;
        Ok(t.with_caption(format!(
            "{:?} %{}",
            self.metric,
            if self.preprocessed {
                format!(", removed: {}", shared_in_words(&self.shared_within_seed))
            } else {
                String::new()
            }
        )))
    }
}

/// `the 11812 weights kept by all 5 masks` for one group; per seed otherwise
/// (`seed 0: 6061 weights kept by all 5 masks; seed 1: …`).
pub fn shared_in_words(groups: &[SeedShared]) -> String {
    let one = |g: &SeedShared| format!("{} weights kept by all {} masks", g.shared, g.masks);
    match groups {
        [g] if g.seed.is_empty() => format!("the {}", one(g)),
        _ => groups
            .iter()
            .map(|g| format!("{}: {}", seed_label(&g.seed), one(g)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// `s0` as `seed 0`; the unnamed group as `no seed`.
pub fn seed_label(seed: &str) -> String {
    match seed.strip_prefix('s') {
        Some(n) => format!("seed {n}"),
        None => "no seed".into(),
    }
}

impl crate::masking::set::MaskSet {
    /// Kept fraction, sparsity, dispersity and per-sub-network shares of every mask.
    pub fn stats(&self) -> Result<Table> {
        let stats: Vec<MaskStats> = self.runs.iter().map(|r| mask_stats(&r.mask)).collect();
        Ok(stats_table(&stats)?.with_caption(format!("modules on {}", self.checkpoint)))
    }

    /// Pairwise overlap of the masks after the study's preprocessing (the weights kept by
    /// every mask removed first).
    pub fn sharing(&self, metric: Overlap) -> Result<SharingMatrix> {
        sharing_matrix(&self.masks(), metric, true)
    }

    /// Inline display: the statistics table.
    pub fn evcxr_display(&self) {
        match self.stats() {
            Ok(t) => t.evcxr_display(),
            Err(e) => println!("{e}"),
        }
    }
}
