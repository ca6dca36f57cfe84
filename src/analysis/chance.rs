//! Chance levels of the mask measures: the count-matched null model.
//!
//! Every measure of a module (its dispersity, its overlap with another module, per tensor or in
//! all) depends on how many weights each tensor keeps. The null keeps exactly those counts and
//! places the kept weights uniformly at random inside each tensor, independently per mask; the
//! study's preprocessing, per seed (`Removal`: two masks of one seed lose what every mask of
//! that seed keeps, two masks of different seeds what every mask of either seed keeps) is
//! recomputed inside every draw. A measure means something only where it leaves that
//! distribution: each reading comes with the null's mean and SD over N seeded draws,
//! `z = (observed − mean) / SD` and the one-sided `p = (1 + #{null ≥ observed}) / (1 + N)`.
//!
//! With stochastic binarisation ([`Binarize::Sample`]) the observed value is the mean over
//! `samples` draws (each mask binarised by one sample per draw, then preprocessed and measured),
//! with their SD; null draw `d` shuffles sample `d mod samples`.

use serde::{Deserialize, Serialize};

use super::masks::{seed_groups, study_labels, SeedShared};
use crate::masking::bits::{Binarize, MaskBits};
use crate::masking::overlap::Overlap;
use crate::masking::{check_comparable, Mask, MixedSettings};
use crate::rng::Rng;
use crate::{Error, Result};

/// Settings of a chance-level computation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChanceConfig {
    /// Null draws (default 1000; 0 skips the null model).
    pub draws: usize,
    /// Seed of the null draws and of the binarisation samples (default 0).
    pub seed: u64,
    /// How logits become bits (default [`Binarize::Threshold`]).
    pub binarize: Binarize,
    /// Samples averaged when `binarize` is [`Binarize::Sample`] (default 20).
    pub samples: usize,
    /// Whether masks trained with different settings may be compared (default: refused).
    pub mixed: MixedSettings,
}

impl Default for ChanceConfig {
    fn default() -> Self {
        ChanceConfig {
            draws: 1000,
            seed: 0,
            binarize: Binarize::Threshold,
            samples: 20,
            mixed: MixedSettings::Refuse,
        }
    }
}

crate::with_setters!(ChanceConfig {
    with_draws => draws: usize,
    with_seed => seed: u64,
    with_binarize => binarize: Binarize,
    with_samples => samples: usize,
    with_mixed => mixed: MixedSettings,
});

impl ChanceConfig {
    /// The binarised forms the observed readings average over: one for the threshold, else
    /// `samples` seeded samples of every mask.
    fn binarised(&self, masks: &[Mask]) -> Result<Vec<Vec<MaskBits>>> {
        let mut rng = Rng::new(self.seed).fork("binarize");
        let count = match self.binarize {
            Binarize::Threshold => 1,
            Binarize::Sample => self.samples.max(1),
        };
        (0..count)
            .map(|_| Mask::bits_of_all(masks, self.binarize, &mut rng))
            .collect()
    }
}

/// One measure against its null distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChanceLevel {
    /// The measure on the masks (the mean over samples under stochastic binarisation).
    pub observed: f64,
    /// SD of the observed value over the binarisation samples (0 for the threshold).
    pub observed_sd: f64,
    /// Mean over the null draws.
    pub null_mean: f64,
    /// SD over the null draws.
    pub null_sd: f64,
    /// `(observed − null_mean) / null_sd` (0 when both agree exactly, ±∞ past a zero SD).
    pub z: f64,
    /// One-sided `(1 + #{null ≥ observed}) / (1 + N)`: small when above chance.
    pub p: f64,
}

impl ChanceLevel {
    /// The reading of `observed` values (one per binarisation sample) against `null` values.
    pub fn of(observed: &[f64], null: &[f64]) -> ChanceLevel {
        let (observed_mean, observed_sd) = mean_sd(observed);
        let (null_mean, null_sd) = mean_sd(null);
        let diff = observed_mean - null_mean;
        let z = if null_sd > 0.0 {
            diff / null_sd
        } else if diff == 0.0 {
            0.0
        } else {
            diff.signum() * f64::INFINITY
        };
        let at_least = null.iter().filter(|&&v| v >= observed_mean).count();
        ChanceLevel {
            observed: observed_mean,
            observed_sd,
            null_mean,
            null_sd,
            z,
            p: (1 + at_least) as f64 / (1 + null.len()) as f64,
        }
    }
}

/// Refuses a sharing matrix of fewer than two masks, and the study's preprocessing where a seed
/// has fewer than three masks ([`seed_groups`]): with two masks the weights kept by both are
/// their whole intersection, so their overlap would read 0.
pub fn check_sharing_inputs(names: &[String], preprocess: bool) -> Result<()> {
    if names.len() < 2 {
        return Err(Error::NotEnough(
            "a sharing matrix needs at least two masks".into(),
        ));
    }
    if !preprocess {
        return Ok(());
    }
    match seed_groups(names).into_iter().find(|(_, m)| m.len() < 3) {
        Some((seed, members)) => Err(Error::NotEnough(format!(
            "removing the weights kept by all masks of a seed needs at least three masks of \
             each seed, and {} has {} ({}): with two it removes their whole intersection (their \
             overlap reads 0), with one the whole mask",
            if seed.is_empty() {
                "the masks without a seed".to_string()
            } else {
                seed
            },
            members.len(),
            members
                .iter()
                .map(|&i| names[i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Ok(()),
    }
}

/// Mean and sample SD (0 for fewer than two values; NaN mean for none).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// What the study's preprocessing removes from N masks, seed by seed ([`seed_groups`]): the
/// weights kept by every mask of a seed. A mask alone loses its own seed's set; a pair of masks
/// is read after both lose what either seed's masks all keep, so both sides of a pair are
/// always cut alike. With one seed (the study's one set of masks) this is the study's rule.
struct Removal {
    /// Each mask's seed group.
    group_of: Vec<usize>,
    /// `union[g][h]`: the weights kept by every mask of seed `g` or by every mask of seed `h`
    /// (`union[g][g]`: seed `g`'s own set).
    union: Vec<Vec<MaskBits>>,
}

impl Removal {
    fn of(masks: &[MaskBits], groups: &[(String, Vec<usize>)]) -> Removal {
        let mut group_of = vec![0; masks.len()];
        let commons: Vec<MaskBits> = groups
            .iter()
            .enumerate()
            .map(|(g, (_, members))| {
                members.iter().for_each(|&i| group_of[i] = g);
                MaskBits::common(members.iter().map(|&i| &masks[i]))
                    .expect("seed_groups never yields an empty group")
            })
            .collect();
        let union = commons
            .iter()
            .map(|a| commons.iter().map(|b| a.union(b)).collect())
            .collect();
        Removal { group_of, union }
    }

    /// Seed `g`'s own set: what every one of its masks keeps.
    fn within(&self, g: usize) -> &MaskBits {
        &self.union[g][g]
    }

    fn for_mask(&self, i: usize) -> &MaskBits {
        self.within(self.group_of[i])
    }

    fn for_pair(&self, i: usize, j: usize) -> &MaskBits {
        &self.union[self.group_of[i]][self.group_of[j]]
    }
}

/// Pairwise overlap counts of N masks, in all and per tensor, optionally after the study's
/// preprocessing ([`Removal`]).
struct OverlapCounts {
    /// `(both, a, b)` per pair `(i, j)`, `i < j`, over all tensors.
    pairs: Vec<(u64, u64, u64)>,
    /// The same per tensor: `per_tensor[t][pair]`.
    per_tensor: Vec<Vec<(u64, u64, u64)>>,
    /// Each mask's kept count per tensor after its own seed's removal: `kept[t][mask]`.
    kept: Vec<Vec<u64>>,
}

impl OverlapCounts {
    /// `groups`: the preprocessing's units, `None` for no preprocessing.
    fn of(masks: &[MaskBits], groups: Option<&[(String, Vec<usize>)]>) -> OverlapCounts {
        let removal = groups.map(|g| Removal::of(masks, g));
        let n_tensors = masks[0].tensors.len();
        let pairs_ij = pair_indices(masks.len());
        let mut per_tensor = vec![vec![(0, 0, 0); pairs_ij.len()]; n_tensors];
        let mut kept_per_tensor = Vec::with_capacity(n_tensors);
        for (t, row) in per_tensor.iter_mut().enumerate() {
            let bits = |m: usize| &masks[m].tensors[t];
            let kept: Vec<u64> = (0..masks.len())
                .map(|m| match &removal {
                    Some(r) => bits(m).kept_outside(&r.for_mask(m).tensors[t]),
                    None => bits(m).kept(),
                })
                .collect();
            for (p, &(i, j)) in pairs_ij.iter().enumerate() {
                row[p] = match &removal {
                    Some(r) => {
                        let cut = &r.for_pair(i, j).tensors[t];
                        let (a, b) = (bits(i), bits(j));
                        (
                            a.both_outside(b, cut),
                            a.kept_outside(cut),
                            b.kept_outside(cut),
                        )
                    }
                    None => (bits(i).both(bits(j)), kept[i], kept[j]),
                };
            }
            kept_per_tensor.push(kept);
        }
        let pairs = (0..pairs_ij.len())
            .map(|p| {
                per_tensor.iter().fold((0, 0, 0), |acc, row| {
                    (acc.0 + row[p].0, acc.1 + row[p].1, acc.2 + row[p].2)
                })
            })
            .collect();
        OverlapCounts {
            pairs,
            per_tensor,
            kept: kept_per_tensor,
        }
    }

    /// Mask `m`'s share of its (preprocessed) kept weights that lies in tensor `t`, percent.
    fn share(&self, t: usize, m: usize) -> f64 {
        let total: u64 = self.kept.iter().map(|row| row[m]).sum();
        100.0 * self.kept[t][m] as f64 / total.max(1) as f64
    }
}

/// `(i, j)` for `i < j < n`, row by row.
fn pair_indices(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .collect()
}

fn percent(metric: Overlap, (both, a, b): (u64, u64, u64)) -> f64 {
    100.0 * metric.of(both as i64, a as i64, b as i64)
}

/// The overlap of every pair of `masks` in percent (the diagonal 100), after the study's
/// preprocessing per seed ([`Removal`]) when `preprocess`: the plain sharing matrix, counted as
/// the chance level's observed side is.
pub(crate) fn observed_matrix(
    masks: &[MaskBits],
    groups: &[(String, Vec<usize>)],
    metric: Overlap,
    preprocess: bool,
) -> Vec<Vec<f64>> {
    let counts = OverlapCounts::of(masks, preprocess.then_some(groups));
    let n = masks.len();
    let mut matrix = vec![vec![100.0; n]; n];
    for (p, &(i, j)) in pair_indices(n).iter().enumerate() {
        matrix[i][j] = percent(metric, counts.pairs[p]);
        matrix[j][i] = matrix[i][j];
    }
    matrix
}

/// What every one of `masks` keeps, and per seed what every mask of that seed keeps (what the
/// preprocessing removes from a pair of that seed).
pub(crate) fn kept_in_common(
    masks: &[MaskBits],
    groups: &[(String, Vec<usize>)],
) -> (u64, Vec<SeedShared>) {
    let removal = Removal::of(masks, groups);
    let per_seed = groups
        .iter()
        .enumerate()
        .map(|(g, (seed, members))| SeedShared {
            seed: seed.clone(),
            masks: members.len(),
            shared: removal.within(g).kept(),
        })
        .collect();
    (MaskBits::common(masks).map_or(0, |c| c.kept()), per_seed)
}

/// A sharing matrix with its chance level: every off-diagonal cell against the count-matched
/// null (`matrix`, `null_mean`, `null_sd`, `z`, `p`: N×N, the diagonal 100 / 100 / 0 / 0 / 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharingChance {
    /// The masks' names, in row (and column) order.
    pub names: Vec<String>,
    /// The overlap measure.
    pub metric: Overlap,
    /// Whether the study's preprocessing came first, per seed (in every draw too): a pair is
    /// read after both masks lose what every mask of either one's seed keeps (for one seed,
    /// the study's rule; see [`seed_groups`]).
    pub preprocessed: bool,
    /// The binarisation behind the observed values.
    pub binarize: Binarize,
    /// Binarisation samples averaged (1 for the threshold).
    pub samples: usize,
    /// Null draws.
    pub draws: usize,
    /// The seed of samples and draws.
    pub seed: u64,
    /// Observed overlap, percent (the mean over samples).
    pub matrix: Vec<Vec<f64>>,
    /// SD of the observed overlap over the binarisation samples.
    pub matrix_sd: Vec<Vec<f64>>,
    /// Mean overlap under the null, percent.
    pub null_mean: Vec<Vec<f64>>,
    /// SD under the null.
    pub null_sd: Vec<Vec<f64>>,
    /// `(observed − null_mean) / null_sd`.
    pub z: Vec<Vec<f64>>,
    /// One-sided p of "above chance".
    pub p: Vec<Vec<f64>>,
    /// Scalars kept by every mask of every seed (the observed binarisation; the first
    /// sample's).
    pub shared_by_all: u64,
    /// Per seed: its masks and the scalars they all keep, which the preprocessing removes (the
    /// observed binarisation; the first sample's).
    #[serde(default)]
    pub shared_within_seed: Vec<SeedShared>,
    /// Per tensor: each pair's overlap inside that tensor against its null (pairs in the order
    /// `(0,1), (0,2), …, (1,2), …`).
    pub per_tensor: Vec<TensorSharingChance>,
    /// Per tensor: each mask's share of its kept weights (after the removal, when
    /// preprocessed) in that tensor, percent, against the null — the study's spatial
    /// distribution (R8). Without the removal the null keeps every share exactly (z = 0).
    pub shares: Vec<TensorShareChance>,
}

/// One tensor's share of every mask against chance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorShareChance {
    /// The parameter's name.
    pub tensor: String,
    /// The study's plot label.
    pub label: String,
    /// One reading per mask, in the masks' order.
    pub masks: Vec<ChanceLevel>,
}

/// One tensor's pairwise overlaps against chance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorSharingChance {
    /// The parameter's name.
    pub tensor: String,
    /// The study's plot label (`V1`, `A2`, …).
    pub label: String,
    /// One reading per pair.
    pub pairs: Vec<ChanceLevel>,
}

impl SharingChance {
    /// The reading for the masks called `a` and `b`.
    pub fn get(&self, a: &str, b: &str) -> Option<ChanceLevel> {
        let i = self.names.iter().position(|n| n == a)?;
        let j = self.names.iter().position(|n| n == b)?;
        Some(ChanceLevel {
            observed: self.matrix[i][j],
            observed_sd: self.matrix_sd[i][j],
            null_mean: self.null_mean[i][j],
            null_sd: self.null_sd[i][j],
            z: self.z[i][j],
            p: self.p[i][j],
        })
    }

    /// Pairs significantly above chance (one-sided p ≤ 0.05) and the rest, each pair once.
    pub fn above_below(&self) -> (usize, usize) {
        let n = self.names.len();
        let above = pair_indices(n)
            .iter()
            .filter(|&&(i, j)| self.p[i][j] <= 0.05 && self.z[i][j] > 0.0)
            .count();
        (above, n * (n - 1) / 2 - above)
    }

    /// Pairs above chance once the 5 % level is divided among all pairs (Bonferroni), all
    /// pairs, and the smallest z: with N draws no p falls below 1 / (N + 1), so the count says
    /// whether the draws could reach the corrected level at all.
    pub fn above_after_bonferroni(&self) -> (usize, usize, f64) {
        let pairs = pair_indices(self.names.len());
        let level = 0.05 / pairs.len().max(1) as f64;
        let above = pairs
            .iter()
            .filter(|&&(i, j)| self.p[i][j] <= level && self.z[i][j] > 0.0)
            .count();
        let smallest_z = pairs
            .iter()
            .map(|&(i, j)| self.z[i][j])
            .fold(f64::INFINITY, f64::min);
        (above, pairs.len(), smallest_z)
    }

    /// The observed overlap and its chance level per pair of different tasks, each the mean
    /// over the seeds in which both were trained (two masks of one seed: the study's design,
    /// one set of masks, whose preprocessing is the study's rule): `((a, b), observed, chance)`
    /// with `a < b`, in order.
    pub fn between_task_pairs(&self) -> Vec<((String, String), f64, f64)> {
        use super::replicates::{seed_of, task_of};
        let mut sums: std::collections::BTreeMap<(String, String), (f64, f64, usize)> =
            Default::default();
        for (i, j) in pair_indices(self.names.len()) {
            let (a, b) = (task_of(&self.names[i]), task_of(&self.names[j]));
            if a == b || seed_of(&self.names[i]) != seed_of(&self.names[j]) {
                continue;
            }
            let key = match a < b {
                true => (a.to_string(), b.to_string()),
                false => (b.to_string(), a.to_string()),
            };
            let entry = sums.entry(key).or_default();
            entry.0 += self.matrix[i][j];
            entry.1 += self.null_mean[i][j];
            entry.2 += 1;
        }
        sums.into_iter()
            .map(|(pair, (observed, chance, n))| (pair, observed / n as f64, chance / n as f64))
            .collect()
    }

    /// Whether replicates of one task share more than masks of different tasks, tested on this
    /// matrix ([`super::replicates::pooled_replicate_test`]) over the tasks with at least two
    /// masks (a task with one seed has no replicate to compare).
    pub fn replicate_test(&self) -> Result<super::replicates::PooledReplicateTest> {
        use super::replicates::task_of;
        let seeds_of = |name: &str| {
            let task = task_of(name);
            self.names.iter().filter(|n| task_of(n) == task).count()
        };
        let keep: Vec<usize> = (0..self.names.len())
            .filter(|&i| seeds_of(&self.names[i]) >= 2)
            .collect();
        let names: Vec<String> = keep.iter().map(|&i| self.names[i].clone()).collect();
        let matrix: Vec<Vec<f64>> = keep
            .iter()
            .map(|&i| keep.iter().map(|&j| self.matrix[i][j]).collect())
            .collect();
        super::replicates::pooled_replicate_test(&names, &matrix, self.seed)
    }

    /// How the observed values were binarised, in words (`l > 0`, `mean of 20 samples`).
    pub fn binarisation(&self) -> String {
        match self.binarize {
            Binarize::Threshold => "l > 0".into(),
            Binarize::Sample => format!("mean of {} samples", self.samples),
        }
    }
}

/// The sharing matrix of `masks` against the count-matched null (see the module docs).
pub fn sharing_chance(
    masks: &[Mask],
    metric: Overlap,
    preprocess: bool,
    cfg: &ChanceConfig,
) -> Result<SharingChance> {
    check_comparable(masks, cfg.mixed)?;
    let names: Vec<String> = masks.iter().map(|m| m.name.clone()).collect();
    check_sharing_inputs(&names, preprocess)?;
    let groups = seed_groups(&names);
    let units = preprocess.then_some(groups.as_slice());
    if cfg.draws == 0 {
        return Err(Error::Config(
            "a chance level needs at least one null draw (--null N, N ≥ 1)".into(),
        ));
    }
    let binarised = cfg.binarised(masks)?;
    let observed: Vec<OverlapCounts> = binarised
        .iter()
        .map(|b| OverlapCounts::of(b, units))
        .collect();
    let mut rng = Rng::new(cfg.seed).fork("null");
    let null: Vec<OverlapCounts> = (0..cfg.draws)
        .map(|d| {
            let source = &binarised[d % binarised.len()];
            let shuffled: Vec<MaskBits> = source.iter().map(|m| m.shuffled(&mut rng)).collect();
            OverlapCounts::of(&shuffled, units)
        })
        .collect();
    let n = masks.len();
    let pairs = pair_indices(n);
    let level = |pick: &dyn Fn(&OverlapCounts) -> (u64, u64, u64)| {
        let obs: Vec<f64> = observed.iter().map(|c| percent(metric, pick(c))).collect();
        let nul: Vec<f64> = null.iter().map(|c| percent(metric, pick(c))).collect();
        ChanceLevel::of(&obs, &nul)
    };
    let overall: Vec<ChanceLevel> = (0..pairs.len()).map(|p| level(&|c| c.pairs[p])).collect();
    let share_level = |t: usize, m: usize| {
        let obs: Vec<f64> = observed.iter().map(|c| c.share(t, m)).collect();
        let nul: Vec<f64> = null.iter().map(|c| c.share(t, m)).collect();
        ChanceLevel::of(&obs, &nul)
    };
    let per_tensor = per_tensor_names(&binarised[0][0])
        .into_iter()
        .enumerate()
        .map(|(t, (tensor, label))| TensorSharingChance {
            tensor,
            label,
            pairs: (0..pairs.len())
                .map(|p| level(&|c| c.per_tensor[t][p]))
                .collect(),
        })
        .collect();
    let shares = per_tensor_names(&binarised[0][0])
        .into_iter()
        .enumerate()
        .map(|(t, (tensor, label))| TensorShareChance {
            tensor,
            label,
            masks: (0..n).map(|m| share_level(t, m)).collect(),
        })
        .collect();
    let (shared_by_all, shared_within_seed) = kept_in_common(&binarised[0], &groups);
    let square = |diagonal: f64, value: &dyn Fn(&ChanceLevel) -> f64| {
        let mut m = vec![vec![diagonal; n]; n];
        for (p, &(i, j)) in pairs.iter().enumerate() {
            m[i][j] = value(&overall[p]);
            m[j][i] = m[i][j];
        }
        m
    };
    Ok(SharingChance {
        names: masks.iter().map(|m| m.name.clone()).collect(),
        metric,
        preprocessed: preprocess,
        binarize: cfg.binarize,
        samples: binarised.len(),
        draws: cfg.draws,
        seed: cfg.seed,
        matrix: square(100.0, &|c| c.observed),
        matrix_sd: square(0.0, &|c| c.observed_sd),
        null_mean: square(100.0, &|c| c.null_mean),
        null_sd: square(0.0, &|c| c.null_sd),
        z: square(0.0, &|c| c.z),
        p: square(1.0, &|c| c.p),
        shared_by_all,
        shared_within_seed,
        per_tensor,
        shares,
    })
}

/// `(tensor name, study label)` of every tensor of `mask`, in order.
fn per_tensor_names(mask: &MaskBits) -> Vec<(String, String)> {
    let names: Vec<String> = mask.tensors.iter().map(|t| t.name.clone()).collect();
    let labels = study_labels(&names);
    names.into_iter().zip(labels).collect()
}

/// A mask's dispersity against the count-matched null: overall (the mean over tensors) and per
/// tensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispersityChance {
    /// The mask's name.
    pub name: String,
    /// The binarisation behind the observed values.
    pub binarize: Binarize,
    /// Null draws.
    pub draws: usize,
    /// The mean of the per-tensor dispersities.
    pub dispersity: ChanceLevel,
    /// One reading per tensor, in the mask's order: `(tensor, label, reading)`.
    pub per_tensor: Vec<(String, String, ChanceLevel)>,
}

/// Dispersity of each mask against the count-matched null (each mask on its own: dispersity
/// does not depend on the other masks).
pub fn dispersity_chance(masks: &[Mask], cfg: &ChanceConfig) -> Result<Vec<DispersityChance>> {
    if cfg.draws == 0 {
        return Err(Error::Config(
            "a chance level needs at least one null draw (--null N, N ≥ 1)".into(),
        ));
    }
    masks
        .iter()
        .enumerate()
        .map(|(index, mask)| {
            let binarised = cfg.binarised(std::slice::from_ref(mask))?;
            let mut rng = Rng::new(cfg.seed).fork(&format!("dispersity null {index}"));
            // Per draw: the per-tensor dispersities (the bits themselves are not kept).
            let per_tensor_values =
                |m: &MaskBits| -> Vec<f64> { m.tensors.iter().map(|t| t.dispersity()).collect() };
            let null: Vec<Vec<f64>> = (0..cfg.draws)
                .map(|d| per_tensor_values(&binarised[d % binarised.len()][0].shuffled(&mut rng)))
                .collect();
            let observed: Vec<Vec<f64>> =
                binarised.iter().map(|b| per_tensor_values(&b[0])).collect();
            let mean_of = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let level = |f: &dyn Fn(&Vec<f64>) -> f64| {
                let obs: Vec<f64> = observed.iter().map(f).collect();
                let nul: Vec<f64> = null.iter().map(f).collect();
                ChanceLevel::of(&obs, &nul)
            };
            let per_tensor = per_tensor_names(&binarised[0][0])
                .into_iter()
                .enumerate()
                .map(|(t, (tensor, label))| (tensor, label, level(&|v| v[t])))
                .collect();
            Ok(DispersityChance {
                name: mask.name.clone(),
                binarize: cfg.binarize,
                draws: cfg.draws,
                dispersity: level(&mean_of),
                per_tensor,
            })
        })
        .collect()
}

/// One row per mask: kept %, the fraction of logits with `|l| < 2`, how much of the kept set
/// one sample changes on average, and whether that is within the convergence rule.
pub fn decisiveness_table(masks: &[Mask]) -> Result<crate::display::Table> {
    use polars::prelude::*;
    let d = masks
        .iter()
        .map(Mask::decisiveness)
        .collect::<Result<Vec<_>>>()?;
    let total = |m: &Mask| m.logits.numel().max(1) as f64;
    let df = df!(
        "mask" => masks.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "kept_%" => masks.iter().zip(&d).map(|(m, d)| 100.0 * d.kept as f64 / total(m)).collect::<Vec<_>>(),
        "|l| < 2 (%)" => d.iter().map(|d| 100.0 * d.undecided_fraction).collect::<Vec<_>>(),
        "one sample changes (% of kept)" => d.iter().map(|d| 100.0 * d.flips_per_kept).collect::<Vec<_>>(),
        "converged" => d.iter().map(|d| d.converged).collect::<Vec<_>>()
    )?;
    let mut t = crate::display::Table::new(df).with_caption(format!(
        "decisiveness of the logits (converged: one sample changes ≤ {:.0} % of the kept set)",
        100.0 * crate::masking::bits::Decisiveness::CONVERGED_FLIPS_PER_KEPT
    ));
    t.float_decimals = 1;
    Ok(t)
}

/// One row per mask: its dispersity, the count-matched chance level (mean ± SD), z and p.
pub fn dispersity_table(readings: &[DispersityChance]) -> Result<crate::display::Table> {
    use polars::prelude::*;
    let col = |f: fn(&ChanceLevel) -> f64| {
        readings
            .iter()
            .map(|r| f(&r.dispersity))
            .collect::<Vec<_>>()
    };
    let df = df!(
        "mask" => readings.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "dispersity" => col(|c| c.observed),
        "chance" => col(|c| c.null_mean),
        "chance SD" => col(|c| c.null_sd),
        "z" => col(|c| c.z),
        "p (above chance)" => col(|c| c.p)
    )?;
    let draws = readings.first().map_or(0, |r| r.draws);
    Ok(crate::display::Table::new(df).with_caption(format!(
        "dispersity against the count-matched null ({draws} draws)"
    )))
}
