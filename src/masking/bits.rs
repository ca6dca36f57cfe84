//! Masks as bits: binarisation (deterministic `l > 0` or seeded stochastic samples), the
//! diagnostics that say how far a sample can stray from `l > 0`, and the packed form the
//! chance levels of [`crate::analysis::chance`] shuffle thousands of times.

use serde::{Deserialize, Serialize};
use tch::Kind;

use super::Mask;
use crate::rng::Rng;
use crate::{Error, Result};

/// How a mask's logits become 0/1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Binarize {
    /// Keep a weight iff its logit is positive: one answer, no randomness (the default).
    #[default]
    Threshold,
    /// Keep a weight with probability σ(l), one independent draw per weight: what one
    /// hard Gumbel-sigmoid sample gives, and what the study's published figures used.
    Sample,
}

impl Binarize {
    /// `threshold` or `sample`.
    pub fn name(self) -> &'static str {
        match self {
            Binarize::Threshold => "threshold",
            Binarize::Sample => "sample",
        }
    }
}

/// One tensor of a binary mask, one bit per scalar (row-major), with the tensor's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorBits {
    /// The parameter's name.
    pub name: String,
    /// The parameter's shape (empty for a scalar).
    pub shape: Vec<i64>,
    /// Scalars in the tensor.
    pub numel: usize,
    words: Vec<u64>,
}

impl TensorBits {
    /// All zeros.
    pub fn zeros(name: &str, shape: &[i64]) -> TensorBits {
        let numel = shape.iter().product::<i64>().max(1) as usize;
        TensorBits {
            name: name.to_string(),
            shape: shape.to_vec(),
            numel,
            words: vec![0; numel.div_ceil(64)],
        }
    }

    /// Sets bit `i`.
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Whether bit `i` is set.
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Number of ones.
    pub fn kept(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// Number of positions set in both.
    pub fn both(&self, other: &TensorBits) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones() as u64)
            .sum()
    }

    /// Bitwise AND, in place.
    pub fn and_assign(&mut self, other: &TensorBits) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a &= b);
    }

    /// Bitwise OR, in place.
    pub fn or_assign(&mut self, other: &TensorBits) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a |= b);
    }

    /// Number of ones outside `removed` (positions set there are not counted).
    pub fn kept_outside(&self, removed: &TensorBits) -> u64 {
        self.words
            .iter()
            .zip(&removed.words)
            .map(|(a, r)| (a & !r).count_ones() as u64)
            .sum()
    }

    /// Number of positions set in both, outside `removed`.
    pub fn both_outside(&self, other: &TensorBits, removed: &TensorBits) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .zip(&removed.words)
            .map(|((a, b), r)| (a & b & !r).count_ones() as u64)
            .sum()
    }

    /// The flat indices of the ones, ascending.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        })
    }

    /// The same shape with `self.kept()` ones placed uniformly at random (Floyd's sampling;
    /// the complement is drawn when more than half is kept, so a draw costs O(min(k, n − k))).
    pub fn shuffled(&self, rng: &mut Rng) -> TensorBits {
        let (n, k) = (self.numel, self.kept() as usize);
        let flip = 2 * k > n;
        let draw = if flip { n - k } else { k };
        let mut out = TensorBits::zeros(&self.name, &self.shape);
        for j in (n - draw)..n {
            let t = rng.below(j + 1);
            out.set(if out.get(t) { j } else { t });
        }
        if flip {
            out.words.iter_mut().for_each(|w| *w = !*w);
            out.clear_tail();
        }
        out
    }

    /// Zeros the padding bits past `numel` in the last word.
    fn clear_tail(&mut self) {
        let rem = self.numel % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }

    /// The study's dispersity `(1/n) Σ_j ‖p_j − μ‖² / (‖μ‖² + 1e-12)` over the index coordinates
    /// of the ones (0 when none is kept); equals
    /// [`tensor_dispersity`](crate::analysis::masks::tensor_dispersity) of the 0/1 tensor.
    pub fn dispersity(&self) -> f64 {
        let dims: Vec<usize> = if self.shape.is_empty() {
            vec![1]
        } else {
            self.shape.iter().map(|&d| d as usize).collect()
        };
        let mut sum = vec![0f64; dims.len()];
        let mut sum_sq = 0f64;
        let mut n = 0usize;
        for i in self.ones() {
            let mut rest = i;
            for (axis, &d) in dims.iter().enumerate().rev() {
                let c = (rest % d) as f64;
                rest /= d;
                sum[axis] += c;
                sum_sq += c * c;
            }
            n += 1;
        }
        if n == 0 {
            return 0.0;
        }
        let mu_sq: f64 = sum.iter().map(|s| (s / n as f64).powi(2)).sum();
        (sum_sq / n as f64 - mu_sq).max(0.0) / (mu_sq + 1e-12)
    }
}

/// A binary mask as bits, tensor by tensor in the mask's order.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskBits {
    /// The mask's name.
    pub name: String,
    /// One entry per masked tensor.
    pub tensors: Vec<TensorBits>,
}

impl MaskBits {
    /// Scalars kept over all tensors.
    pub fn kept(&self) -> u64 {
        self.tensors.iter().map(TensorBits::kept).sum()
    }

    /// Scalars in all tensors.
    pub fn total(&self) -> u64 {
        self.tensors.iter().map(|t| t.numel as u64).sum()
    }

    /// The positions set in every one of `masks` (of one layout), tensor by tensor; `None` for
    /// no masks.
    pub fn common<'a>(masks: impl IntoIterator<Item = &'a MaskBits>) -> Option<MaskBits> {
        let mut masks = masks.into_iter();
        let mut common = masks.next()?.clone();
        for m in masks {
            for (a, b) in common.tensors.iter_mut().zip(&m.tensors) {
                a.and_assign(b);
            }
        }
        Some(common)
    }

    /// The positions set in either (of the same layout).
    pub fn union(&self, other: &MaskBits) -> MaskBits {
        let mut out = self.clone();
        for (a, b) in out.tensors.iter_mut().zip(&other.tensors) {
            a.or_assign(b);
        }
        out
    }

    /// Every tensor's ones placed uniformly at random, the per-tensor counts kept: one draw of
    /// the count-matched null model.
    pub fn shuffled(&self, rng: &mut Rng) -> MaskBits {
        MaskBits {
            name: self.name.clone(),
            tensors: self.tensors.iter().map(|t| t.shuffled(rng)).collect(),
        }
    }

    /// The mean of the per-tensor dispersities (the study's metric).
    pub fn dispersity(&self) -> f64 {
        let sum: f64 = self.tensors.iter().map(TensorBits::dispersity).sum();
        sum / self.tensors.len().max(1) as f64
    }

    /// `masks` with every mask's tensors in the first mask's order, then checked to share its
    /// layout ([`Self::check_same_layout`]). Masks of different sources store the same tensors
    /// in different orders (a study pickle's order against our parameter order); the measures
    /// pair tensors by position, so the order is made one first.
    pub fn in_one_layout(mut masks: Vec<MaskBits>) -> Result<Vec<MaskBits>> {
        if let Some((first, rest)) = masks.split_first_mut() {
            let order: Vec<&str> = first.tensors.iter().map(|t| t.name.as_str()).collect();
            for m in rest {
                m.put_in_order(&order);
            }
        }
        Self::check_same_layout(&masks)?;
        Ok(masks)
    }

    /// Reorders the tensors as `order` names them, when this mask has exactly those tensors
    /// (else leaves them for [`Self::check_same_layout`] to refuse).
    fn put_in_order(&mut self, order: &[&str]) {
        let rank = |t: &TensorBits| order.iter().position(|n| *n == t.name);
        if self.tensors.len() == order.len() && self.tensors.iter().all(|t| rank(t).is_some()) {
            self.tensors.sort_by_key(rank);
        }
    }

    /// Refuses masks of different layouts (names, shapes), naming the first difference.
    pub fn check_same_layout(masks: &[MaskBits]) -> Result<()> {
        let Some(first) = masks.first() else {
            return Ok(());
        };
        for m in &masks[1..] {
            let layout = |x: &MaskBits| -> Vec<(String, Vec<i64>)> {
                x.tensors
                    .iter()
                    .map(|t| (t.name.clone(), t.shape.clone()))
                    .collect()
            };
            if layout(m) != layout(first) {
                return Err(Error::MaskMismatch {
                    mask: m.name.clone(),
                    message: format!("it covers other tensors or shapes than '{}'", first.name),
                });
            }
        }
        Ok(())
    }
}

/// How decided a mask's logits are: the measures that tell a converged mask from one whose
/// samples still wander (`weight-masking.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decisiveness {
    /// Scalars with `l > 0`.
    pub kept: u64,
    /// Fraction of all logits with `|l| < 2` (σ(l) between 0.12 and 0.88).
    pub undecided_fraction: f64,
    /// Expected number of scalars where one sample differs from `l > 0`: `Σ min(σ(l), 1 − σ(l))`.
    pub expected_flips: f64,
    /// `expected_flips / kept`: how much of the kept set one sample is expected to change.
    pub flips_per_kept: f64,
    /// Whether `flips_per_kept ≤` [`Decisiveness::CONVERGED_FLIPS_PER_KEPT`].
    pub converged: bool,
}

impl Decisiveness {
    /// A mask counts as converged when one sample is expected to change at most 5 % of its kept
    /// set: then the deterministic and sampled readings of every measure nearly agree.
    pub const CONVERGED_FLIPS_PER_KEPT: f64 = 0.05;
}

impl Mask {
    /// This mask's bits under `binarize`; `rng` draws the samples (unused for the threshold).
    pub fn bits(&self, binarize: Binarize, rng: &mut Rng) -> Result<MaskBits> {
        let tensors = self
            .logits
            .iter()
            .map(|(name, l)| {
                let values = logit_values(l)?;
                let mut bits = TensorBits::zeros(name, &l.size());
                for (i, &v) in values.iter().enumerate() {
                    let keep = match binarize {
                        Binarize::Threshold => v > 0.0,
                        Binarize::Sample => rng.uniform() < sigmoid(v as f64),
                    };
                    if keep {
                        bits.set(i);
                    }
                }
                Ok(bits)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MaskBits {
            name: self.name.clone(),
            tensors,
        })
    }

    /// The bits of every mask under `binarize` (drawn in the masks' order from `rng`), each
    /// mask's tensors in the first mask's order: the form every measure that pairs tensors by
    /// position reads ([`MaskBits::in_one_layout`]).
    pub fn bits_of_all(masks: &[Mask], binarize: Binarize, rng: &mut Rng) -> Result<Vec<MaskBits>> {
        let bits = masks
            .iter()
            .map(|m| m.bits(binarize, rng))
            .collect::<Result<Vec<_>>>()?;
        MaskBits::in_one_layout(bits)
    }

    /// The decisiveness diagnostics of this mask's logits.
    pub fn decisiveness(&self) -> Result<Decisiveness> {
        let (mut kept, mut undecided, mut flips, mut total) = (0u64, 0u64, 0f64, 0u64);
        for (_, l) in self.logits.iter() {
            for v in logit_values(l)? {
                let p = sigmoid(v as f64);
                kept += (v > 0.0) as u64;
                undecided += (v.abs() < 2.0) as u64;
                flips += p.min(1.0 - p);
                total += 1;
            }
        }
        let flips_per_kept = flips / kept.max(1) as f64;
        Ok(Decisiveness {
            kept,
            undecided_fraction: undecided as f64 / total.max(1) as f64,
            expected_flips: flips,
            flips_per_kept,
            converged: flips_per_kept <= Decisiveness::CONVERGED_FLIPS_PER_KEPT,
        })
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A logit tensor's values, row-major, as f32.
fn logit_values(l: &tch::Tensor) -> Result<Vec<f32>> {
    let flat = l
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .flatten(0, -1);
    Ok(Vec::<f32>::try_from(&flat)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffling_keeps_the_count_and_moves_the_ones() {
        let mut rng = Rng::new(3);
        for (n, k) in [(1usize, 1usize), (70, 3), (70, 69), (1000, 500), (130, 0)] {
            let mut bits = TensorBits::zeros("w", &[n as i64]);
            (0..k).for_each(|i| bits.set(i));
            let s = bits.shuffled(&mut rng);
            assert_eq!(s.kept() as usize, k, "n {n} k {k}");
            assert!(s.ones().all(|i| i < n));
        }
        // Uniform: every position of 10 is kept about k/n of the time.
        let mut bits = TensorBits::zeros("w", &[10]);
        (0..3).for_each(|i| bits.set(i));
        let mut hits = [0usize; 10];
        for _ in 0..20_000 {
            bits.shuffled(&mut rng).ones().for_each(|i| hits[i] += 1);
        }
        assert!(
            hits.iter().all(|&h| (5_400..6_600).contains(&h)),
            "{hits:?}"
        );
    }

    #[test]
    fn dispersity_of_bits_is_the_study_formula() {
        // Ones at (0,1) (0,2) (1,1) (1,2) (1,3) (2,3): μ = (5/6, 2), mean ‖p − μ‖² = 41/36,
        // ‖μ‖² = 169/36, so the dispersity is 41/169.
        let mut bits = TensorBits::zeros("w", &[3, 4]);
        [1, 2, 5, 6, 7, 11].into_iter().for_each(|i| bits.set(i));
        assert!(
            (bits.dispersity() - 41.0 / 169.0).abs() < 1e-12,
            "{}",
            bits.dispersity()
        );
        assert_eq!(TensorBits::zeros("b", &[5]).dispersity(), 0.0);
    }
}
