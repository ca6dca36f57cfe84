//! Replicates: masks of one task trained with several seeds. Every module measure is reported as
//! a mean with a 95 % t interval over seeds, and "shapes A and B share weights" is tested against
//! what two replicates of one shape share: a permutation test of between-shape against
//! same-shape (replicate) overlap.

use serde::{Deserialize, Serialize};

use super::masks::{mask_stats, sharing_matrix_with, Overlap};
use crate::masking::{Mask, MixedSettings};
use crate::rng::Rng;
use crate::{Error, Result};

/// A mean with its 95 % interval and n.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The mean.
    pub mean: f64,
    /// Lower end of the 95 % interval (NaN for n < 2).
    pub low: f64,
    /// Upper end (NaN for n < 2).
    pub high: f64,
    /// Number of values.
    pub n: usize,
}

impl Interval {
    /// Mean ± t(0.975, n − 1)·SD/√n of `values` (Student's t; NaN ends for n < 2).
    pub fn t95(values: &[f64]) -> Interval {
        let n = values.len();
        let (mean, sd) = super::chance::mean_sd(values);
        let half = match n {
            0 | 1 => f64::NAN,
            _ => t_quantile_975(n - 1) * sd / (n as f64).sqrt(),
        };
        Interval {
            mean,
            low: mean - half,
            high: mean + half,
            n,
        }
    }

    /// `12.3 [10.1, 14.5] (n = 3)`, or `12.3 (n = 1, no interval)`.
    pub fn summary(&self, decimals: usize) -> String {
        if self.n < 2 {
            return format!("{:.*} (n = {}, no interval)", decimals, self.mean, self.n);
        }
        let shown = |v: f64| {
            let text = format!("{v:.decimals$}");
            // A value that rounds to zero reads 0.0, not -0.0.
            match text
                .trim_start_matches('-')
                .chars()
                .all(|c| c == '0' || c == '.')
            {
                true => text.trim_start_matches('-').to_string(),
                false => text,
            }
        };
        format!(
            "{} [{}, {}] (n = {})",
            shown(self.mean),
            shown(self.low),
            shown(self.high),
            self.n
        )
    }

    /// The finding of an interval of differences, in words: "`what` rises (falls): change …"
    /// when it excludes 0, else "No significant change in `what`"; `test` names the interval.
    pub fn change_sentence(&self, what: &str, test: &str) -> String {
        if self.excludes(0.0) {
            let direction = if self.mean > 0.0 { "rises" } else { "falls" };
            format!("{what} {direction}: change {} ({test}).", self.summary(3))
        } else {
            format!(
                "No significant change in {what}: {} ({test}; the interval includes 0).",
                self.summary(3)
            )
        }
    }

    /// Two-sided p of the one-sample t test of mean 0 behind [`Interval::t95`] (the t statistic
    /// recovered from the half-width); NaN for n < 2.
    pub fn t_test_p(&self) -> f64 {
        if self.n < 2 {
            return f64::NAN;
        }
        let se = (self.high - self.low) / 2.0 / t_quantile_975(self.n - 1);
        match se > 0.0 {
            true => t_two_sided_p(self.mean / se, self.n - 1),
            false if self.mean == 0.0 => 1.0,
            false => 0.0,
        }
    }

    /// Whether the interval excludes `value`.
    pub fn excludes(&self, value: f64) -> bool {
        self.n >= 2 && (value < self.low || value > self.high)
    }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (table to 30, then the
/// normal's 1.96 with the usual first-order correction).
pub fn t_quantile_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => 1.959964 + 2.4 / df as f64,
    }
}

/// `(task, value)` readings averaged per task (its seeds): one `(task, mean)` per task, in
/// task-name order. Seeds of one task share its data and its unmasked model, so an interval over
/// masks would count them as independent; one over these means does not. Non-finite values
/// are left out of their task's mean (a task with none is left out).
pub fn means_by_task<'a>(readings: impl IntoIterator<Item = (&'a str, f64)>) -> Vec<(String, f64)> {
    let mut sums: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    for (task, value) in readings.into_iter().filter(|(_, v)| v.is_finite()) {
        let entry = sums.entry(task).or_default();
        entry.0 += value;
        entry.1 += 1;
    }
    sums.into_iter()
        .map(|(task, (sum, n))| (task.to_string(), sum / n as f64))
        .collect()
}

/// The mean of values read on pairs of tasks (`((a, b), value)`), with a 95 % interval from
/// the jackknife over tasks: each task left out in turn (with every pair it is in), the
/// spread of those means giving the standard error, and t with (tasks − 1) degrees of
/// freedom. Pairs that share a task are not independent; the tasks are the units, so `n` is
/// the number of tasks. NaN ends for fewer than 3 tasks.
pub fn jackknife_over_tasks(pairs: &[((String, String), f64)]) -> Interval {
    let mut tasks: Vec<&str> = pairs
        .iter()
        .flat_map(|((a, b), _)| [a.as_str(), b.as_str()])
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    let mean_of = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
    let mean = mean_of(pairs.iter().map(|(_, v)| *v).collect());
    let k = tasks.len();
    let left_out: Vec<f64> = tasks
        .iter()
        .map(|t| {
            mean_of(
                pairs
                    .iter()
                    .filter(|((a, b), _)| a != t && b != t)
                    .map(|(_, v)| *v)
                    .collect(),
            )
        })
        .collect();
    let half = match k >= 3 && left_out.iter().all(|v| v.is_finite()) {
        true => {
            let centre = mean_of(left_out.clone());
            let spread: f64 = left_out.iter().map(|v| (v - centre).powi(2)).sum();
            t_quantile_975(k - 1) * ((k - 1) as f64 / k as f64 * spread).sqrt()
        }
        false => f64::NAN,
    };
    Interval {
        mean,
        low: mean - half,
        high: mean + half,
        n: k,
    }
}

/// The smallest and the largest of `values` (`(∞, −∞)` when there are none).
pub fn value_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
            (low.min(v), high.max(v))
        })
}

/// Two-sided p of Student's t statistic `t` with `df` degrees of freedom:
/// `I_{df/(df+t²)}(df/2, ½)`, the regularised incomplete beta function.
pub fn t_two_sided_p(t: f64, df: usize) -> f64 {
    if df == 0 || !t.is_finite() {
        return if t.is_infinite() { 0.0 } else { f64::NAN };
    }
    let df = df as f64;
    incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
}

/// Holm's step-down adjustment of a family of p values (same order as given): the i-th
/// smallest becomes `max over j ≤ i of min(1, (m − j + 1) · p_(j))`. A finding of the family
/// is significant at level a when its adjusted p is ≤ a.
pub fn holm_adjusted(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![f64::NAN; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The regularised incomplete beta function `I_x(a, b)` (Numerical Recipes' `betai`, with
/// Lentz's continued fraction).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ≈ 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// The two-sided two-proportion z test of `a = (correct, n)` against `b`, with the pooled
/// standard error: `(z, p)`. `z` is positive when `a`'s proportion is the larger.
pub fn two_proportion_test(a: (usize, usize), b: (usize, usize)) -> (f64, f64) {
    let (pa, pb) = (a.0 as f64 / a.1 as f64, b.0 as f64 / b.1 as f64);
    let pooled = (a.0 + b.0) as f64 / (a.1 + b.1) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / a.1 as f64 + 1.0 / b.1 as f64)).sqrt();
    if se == 0.0 || !se.is_finite() {
        return (0.0, 1.0);
    }
    let z = (pa - pb) / se;
    (z, erfc(z.abs() / std::f64::consts::SQRT_2))
}

/// The exact McNemar test of two readings of the same problems (`a[i]`, `b[i]`: problem `i`
/// solved): only the discordant problems inform it, and under no difference each is equally
/// likely to favour either side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct McNemar {
    /// Problems only `a` solved.
    pub only_a: usize,
    /// Problems only `b` solved.
    pub only_b: usize,
    /// Two-sided p: twice the binomial(only_a + only_b, ½) tail at the smaller count, capped at 1.
    pub p: f64,
}

/// [`McNemar`] of two equally long outcome lists; `None` when their lengths differ (they are
/// then not readings of the same problems).
pub fn mcnemar_exact(a: &[bool], b: &[bool]) -> Option<McNemar> {
    if a.len() != b.len() {
        return None;
    }
    let only_a = a.iter().zip(b).filter(|(&x, &y)| x && !y).count();
    let only_b = a.iter().zip(b).filter(|(&x, &y)| !x && y).count();
    let (n, k) = (only_a + only_b, only_a.min(only_b));
    // P(X ≤ k) for X ~ binomial(n, ½), summed in logs so that n in the thousands stays finite.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0;
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    Some(McNemar {
        only_a,
        only_b,
        p: (2.0 * tail).min(1.0),
    })
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let value = t * poly.exp();
    if x >= 0.0 {
        value
    } else {
        2.0 - value
    }
}

/// The masks of one task, one per seed.
#[derive(Debug, Clone)]
pub struct Replicates {
    /// The task (`squares`).
    pub task: String,
    /// One mask per seed.
    pub masks: Vec<Mask>,
}

impl Replicates {
    /// Groups masks named `<task>-s<seed>` (what [`crate::masking::set::train_replicates`]
    /// writes) by task, in order of first appearance; a name without a seed suffix is its own
    /// task.
    pub fn group(masks: &[Mask]) -> Vec<Replicates> {
        let mut out: Vec<Replicates> = Vec::new();
        for m in masks {
            let task = task_of(&m.name).to_string();
            match out.iter_mut().find(|r| r.task == task) {
                Some(r) => r.masks.push(m.clone()),
                None => out.push(Replicates {
                    task,
                    masks: vec![m.clone()],
                }),
            }
        }
        out
    }

    /// Kept fraction (percent) over seeds.
    pub fn kept_percent(&self) -> Interval {
        let v: Vec<f64> = self
            .masks
            .iter()
            .map(|m| 100.0 * mask_stats(m).kept_fraction)
            .collect();
        Interval::t95(&v)
    }

    /// Dispersity over seeds.
    pub fn dispersity(&self) -> Interval {
        let v: Vec<f64> = self
            .masks
            .iter()
            .map(|m| mask_stats(m).dispersity)
            .collect();
        Interval::t95(&v)
    }
}

/// `squares-s3` → `squares`; names without a `-s<digits>` suffix stay whole.
pub fn task_of(name: &str) -> &str {
    split_seed(name).0
}

/// `squares-s3` → `s3`; a name without a `-s<digits>` suffix has no seed (`""`).
pub fn seed_of(name: &str) -> &str {
    split_seed(name).1
}

fn split_seed(name: &str) -> (&str, &str) {
    match name.rsplit_once("-s") {
        Some((task, seed)) if !seed.is_empty() && seed.bytes().all(|b| b.is_ascii_digit()) => {
            (task, &name[task.len() + 1..])
        }
        _ => (name, ""),
    }
}

/// Between-task against same-task (replicate) overlap for two tasks, with a permutation test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicateTest {
    /// The two tasks.
    pub tasks: (String, String),
    /// Seeds (masks) per task.
    pub replicates: (usize, usize),
    /// The overlap measure (percent).
    pub metric: Overlap,
    /// Whether the study's preprocessing came first, per seed ([`seed_groups`](super::masks::seed_groups)).
    pub preprocessed: bool,
    /// Mean overlap of masks of the same task (different seeds).
    pub within: f64,
    /// Mean overlap of masks of different tasks.
    pub between: f64,
    /// `within − between`: how much more two replicates share than two tasks.
    pub difference: f64,
    /// One-sided p of "replicates share more than tasks do":
    /// `(#relabelings with difference ≥ observed) / #relabelings`, the observed labelling
    /// included.
    pub p: f64,
    /// Relabelings evaluated (all of them when `exact`).
    pub relabelings: usize,
    /// Whether every relabeling was enumerated.
    pub exact: bool,
    /// The smallest p this design can reach (1 / distinct relabelings).
    pub smallest_possible_p: f64,
}

impl ReplicateTest {
    /// The finding in words, decided by the test at `level` (e.g. 0.05).
    pub fn verdict(&self, level: f64) -> String {
        let (a, b) = (&self.tasks.0, &self.tasks.1);
        let numbers = format!(
            "same-task {:.1} % vs between-task {:.1} % {:?}; permutation p = {:.3}, {} relabelings{}",
            self.within,
            self.between,
            self.metric,
            self.p,
            self.relabelings,
            if self.exact { ", exact" } else { "" }
        );
        if self.p <= level {
            format!("{a} and {b} share fewer weights than replicates of one task ({numbers})")
        } else if self.smallest_possible_p > level {
            format!(
                "no significant difference between {a}–{b} sharing and replicate sharing \
                 ({numbers}; with {} and {} seeds the smallest attainable p is {:.3} — more \
                 seeds are needed to tell them apart)",
                self.replicates.0, self.replicates.1, self.smallest_possible_p
            )
        } else {
            format!(
                "no significant difference between {a}–{b} sharing and replicate sharing ({numbers})"
            )
        }
    }
}

/// Tests whether two replicates of one task share more weights than masks of tasks `a` and `b`
/// do. The overlap matrix of the pooled masks is computed once; the test relabels which masks
/// belong to which task (all relabelings when there are at most 20,000, else 20,000 seeded draws).
/// The study's preprocessing (`preprocess`) needs three masks of each seed, so with two tasks it
/// is refused: read raw overlaps, or test all tasks at once ([`pooled_replicate_test`]).
pub fn replicate_test(
    a: &Replicates,
    b: &Replicates,
    metric: Overlap,
    preprocess: bool,
    seed: u64,
    mixed: MixedSettings,
) -> Result<ReplicateTest> {
    let (n, m) = (a.masks.len(), b.masks.len());
    if n < 2 || m < 2 {
        return Err(Error::NotEnough(format!(
            "a replicate test needs at least two seeds of each task ({}: {n}, {}: {m})",
            a.task, b.task
        )));
    }
    let pooled: Vec<Mask> = a.masks.iter().chain(&b.masks).cloned().collect();
    let matrix = sharing_matrix_with(&pooled, metric, preprocess, mixed)?.matrix;
    let statistic = |in_a: &[bool]| -> (f64, f64) {
        let labels: Vec<usize> = in_a.iter().map(|&a| usize::from(a)).collect();
        within_between(&matrix, &labels)
    };
    let observed_labels: Vec<bool> = (0..n + m).map(|i| i < n).collect();
    let (within, between) = statistic(&observed_labels);
    let difference = within - between;
    let total = binomial(n + m, n);
    let (labelings, exact) = relabelings(n, m, seed, "replicate test");
    let at_least = labelings
        .iter()
        .filter(|l| {
            let (w, b) = statistic(l);
            w - b >= difference - 1e-9
        })
        .count();
    // A relabeling and its mirror give the same statistic when n = m, so the distinct values
    // number half the labelings then.
    let distinct = if n == m { total / 2 } else { total };
    Ok(ReplicateTest {
        tasks: (a.task.clone(), b.task.clone()),
        replicates: (n, m),
        metric,
        preprocessed: preprocess,
        within,
        between,
        difference,
        p: at_least as f64 / labelings.len() as f64,
        relabelings: labelings.len(),
        exact,
        smallest_possible_p: 1.0 / distinct.max(1) as f64,
    })
}

/// Every task at once: do two replicates of one task share more weights than two masks of
/// different tasks? One permutation test over all the masks of a checkpoint, on the overlap
/// matrix that a figure shows, relabelling tasks within each seed. The pairwise
/// [`replicate_test`] of two tasks with two seeds each cannot reach p < 1/3; pooling the tasks
/// gives the design its power (10 masks of 5 tasks × 2 seeds: 14,400 labellings, 120 distinct
/// groupings, smallest p = 1/120).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PooledReplicateTest {
    /// The tasks, in order of first appearance.
    pub tasks: Vec<String>,
    /// Masks (seeds) per task, in the order of `tasks`.
    pub replicates: Vec<usize>,
    /// Mean overlap (percent) of masks of the same task.
    pub within: f64,
    /// Mean overlap (percent) of masks of different tasks.
    pub between: f64,
    /// `within − between`.
    pub difference: f64,
    /// Task pairs whose replicates share more than the two tasks do, of all task pairs
    /// (each pair's same-task mean against its between-task mean).
    pub pairs_within_above: (usize, usize),
    /// One-sided p of "replicates share more than tasks do": the share of task labellings (the
    /// observed labels permuted within each seed) whose difference is at least the observed
    /// one, the observed labelling included.
    pub p: f64,
    /// Labellings evaluated (all of them when `exact`).
    pub relabelings: usize,
    /// Whether every labelling was enumerated.
    pub exact: bool,
    /// The smallest p the design can reach (the share of labellings that group the masks as
    /// observed; one draw's share when sampled).
    pub smallest_possible_p: f64,
}

impl PooledReplicateTest {
    /// The finding in words, decided by the test at `level`; `metric` names the overlap.
    pub fn verdict(&self, level: f64, metric: &str) -> String {
        let seeds: Vec<String> = self.replicates.iter().map(usize::to_string).collect();
        let numbers = format!(
            "same task {:.1} % vs different tasks {:.1} % {metric}; {} tasks with {} seeds; \
             permutation p = {}, {} labellings{}{}; in {} of {} task pairs the replicates share more",
            self.within,
            self.between,
            self.tasks.len(),
            seeds.join("/"),
            p_text(self.p),
            self.relabelings,
            if self.exact { ", exact" } else { "" },
            // Only the observed grouping reaches the observed difference: p is the design's floor.
            match self.p <= self.smallest_possible_p * (1.0 + 1e-9) {
                true => ", the smallest p this design can give",
                false => "",
            },
            self.pairs_within_above.0,
            self.pairs_within_above.1,
        );
        if self.p <= level {
            format!(
                "Two masks of different tasks share significantly fewer weights than two seeds \
                 of one task ({numbers}): the modules are task-specific beyond seed-to-seed \
                 variation."
            )
        } else if self.smallest_possible_p > level {
            format!(
                "No significant difference between sharing across tasks and across seeds \
                 ({numbers}; the smallest attainable p is {} — more seeds are needed).",
                p_text(self.smallest_possible_p)
            )
        } else {
            format!("No significant difference between sharing across tasks and across seeds ({numbers}).")
        }
    }
}

/// The [`PooledReplicateTest`] of the masks named `names` (`<task>-s<seed>`, grouped by
/// [`task_of`]) with the symmetric overlap `matrix` (percent, rows in the order of `names`).
/// Every task needs at least two masks, and at least two tasks are needed. Labels are permuted
/// within each seed ([`seed_strata`]); all such labellings are enumerated when there are at most
/// 200,000, else the observed one and 19,999 seeded draws.
pub fn pooled_replicate_test(
    names: &[String],
    matrix: &[Vec<f64>],
    seed: u64,
) -> Result<PooledReplicateTest> {
    let mut tasks: Vec<String> = Vec::new();
    let labels: Vec<usize> = names
        .iter()
        .map(|name| {
            let task = task_of(name);
            match tasks.iter().position(|t| t == task) {
                Some(i) => i,
                None => {
                    tasks.push(task.to_string());
                    tasks.len() - 1
                }
            }
        })
        .collect();
    let sizes: Vec<usize> = (0..tasks.len())
        .map(|t| labels.iter().filter(|&&l| l == t).count())
        .collect();
    if tasks.len() < 2 || sizes.iter().any(|&s| s < 2) || matrix.len() != names.len() {
        return Err(Error::NotEnough(format!(
            "a pooled replicate test needs two or more tasks with at least two seeds each and \
             one matrix row per mask (tasks {tasks:?}, seeds {sizes:?}, {} rows)",
            matrix.len()
        )));
    }
    let difference_of = |labels: &[usize]| {
        let (within, between) = within_between(matrix, labels);
        within - between
    };
    let (within, between) = within_between(matrix, &labels);
    let difference = within - between;
    let strata = seed_strata(names);
    let (labellings, exact) = labellings(&labels, &strata, seed);
    let at_least = labellings
        .iter()
        .filter(|l| difference_of(l) >= difference - 1e-9)
        .count();
    // The observed grouping recurs under every relabelling of the tasks that the strata allow:
    // the smallest p the design can reach is their share (exact), or one draw's (sampled).
    let same_grouping = labellings
        .iter()
        .filter(|l| same_partition(l, &labels))
        .count();
    Ok(PooledReplicateTest {
        pairs_within_above: pairs_within_above(matrix, &labels, tasks.len()),
        replicates: sizes.clone(),
        tasks,
        within,
        between,
        difference,
        p: at_least as f64 / labellings.len() as f64,
        relabelings: labellings.len(),
        exact,
        smallest_possible_p: same_grouping.max(1) as f64 / labellings.len() as f64,
    })
}

/// Mean overlap of same-label pairs and of different-label pairs.
fn within_between(matrix: &[Vec<f64>], labels: &[usize]) -> (f64, f64) {
    let (mut within, mut nw, mut between, mut nb) = (0.0, 0usize, 0.0, 0usize);
    for i in 0..labels.len() {
        for j in (i + 1)..labels.len() {
            if labels[i] == labels[j] {
                within += matrix[i][j];
                nw += 1;
            } else {
                between += matrix[i][j];
                nb += 1;
            }
        }
    }
    (within / nw as f64, between / nb as f64)
}

/// For each pair of tasks: whether the mean overlap of their replicates (both tasks' same-task
/// pairs) exceeds the mean overlap between them. Returns (pairs where it does, all pairs).
fn pairs_within_above(matrix: &[Vec<f64>], labels: &[usize], tasks: usize) -> (usize, usize) {
    let mean_over = |keep: &dyn Fn(usize, usize) -> bool| {
        let (mut sum, mut n) = (0.0, 0usize);
        for i in 0..labels.len() {
            for j in (i + 1)..labels.len() {
                if keep(labels[i], labels[j]) {
                    sum += matrix[i][j];
                    n += 1;
                }
            }
        }
        sum / n as f64
    };
    let mut above = 0;
    for a in 0..tasks {
        for b in (a + 1)..tasks {
            let within = mean_over(&|x, y| x == y && (x == a || x == b));
            let between = mean_over(&|x, y| (x, y) == (a, b) || (x, y) == (b, a));
            above += usize::from(within > between);
        }
    }
    (above, tasks * (tasks - 1) / 2)
}

/// The stratum of every mask: its seed (`squares-s1` → `1`), so that a relabelling only swaps
/// tasks among masks of one seed. Every labelling then keeps the design: two masks of one task
/// always come from different seeds, as the observed ones do, and masks that share a seed
/// (and with it the sampling noise) are compared across tasks in every labelling alike.
fn seed_strata(names: &[String]) -> Vec<usize> {
    let mut seeds: Vec<&str> = Vec::new();
    names
        .iter()
        .map(|name| {
            let seed = name.strip_prefix(task_of(name)).unwrap_or("");
            match seeds.iter().position(|s| *s == seed) {
                Some(i) => i,
                None => {
                    seeds.push(seed);
                    seeds.len() - 1
                }
            }
        })
        .collect()
}

/// Every labelling that permutes the observed labels within each stratum when there are at
/// most 200,000 (`exact`; the observed one among them), else the observed labels and 19,999
/// seeded within-stratum shuffles of them.
fn labellings(observed: &[usize], strata: &[usize], seed: u64) -> (Vec<Vec<usize>>, bool) {
    let labels = observed.iter().max().map_or(0, |&l| l + 1);
    let strata_count = strata.iter().max().map_or(0, |&s| s + 1);
    // room[stratum][label]: how many masks of that stratum carry that label.
    let mut room = vec![vec![0usize; labels]; strata_count];
    for (&label, &stratum) in observed.iter().zip(strata) {
        room[stratum][label] += 1;
    }
    let total: f64 = room.iter().map(|counts| multinomial(counts)).product();
    if total <= 200_000.0 {
        let mut out = Vec::with_capacity(total as usize);
        assign(&mut room, strata, &mut Vec::new(), &mut out);
        return (out, true);
    }
    let mut rng = Rng::new(seed).fork("pooled replicate test");
    let mut draws = vec![observed.to_vec()];
    draws.extend((1..20_000).map(|_| {
        let mut labelling = observed.to_vec();
        for stratum in 0..strata_count {
            let places: Vec<usize> = (0..strata.len())
                .filter(|&i| strata[i] == stratum)
                .collect();
            let mut values: Vec<usize> = places.iter().map(|&i| observed[i]).collect();
            rng.shuffle(&mut values);
            for (&i, v) in places.iter().zip(values) {
                labelling[i] = v;
            }
        }
        labelling
    }));
    (draws, false)
}

/// Extends `current` (a prefix of a labelling) by every label its next mask's stratum has room
/// for, to full length, into `out`.
fn assign(
    room: &mut [Vec<usize>],
    strata: &[usize],
    current: &mut Vec<usize>,
    out: &mut Vec<Vec<usize>>,
) {
    let Some(&stratum) = strata.get(current.len()) else {
        out.push(current.clone());
        return;
    };
    for label in 0..room[stratum].len() {
        if room[stratum][label] > 0 {
            room[stratum][label] -= 1;
            current.push(label);
            assign(room, strata, current, out);
            current.pop();
            room[stratum][label] += 1;
        }
    }
}

/// `(Σ counts)! / Π counts!`: the distinct orders of a multiset with these counts.
fn multinomial(counts: &[usize]) -> f64 {
    let mut placed = 0usize;
    let mut total = 1.0;
    for &c in counts {
        for k in 1..=c {
            placed += 1;
            total *= placed as f64 / k as f64;
        }
    }
    total
}

/// Whether two labellings group the masks alike (the same pairs share a label).
fn same_partition(a: &[usize], b: &[usize]) -> bool {
    (0..a.len()).all(|i| ((i + 1)..a.len()).all(|j| (a[i] == a[j]) == (b[i] == b[j])))
}

/// Every way to mark `n` of `n + m` positions when there are at most 20,000 (`exact`), else
/// the observed marking (the first `n`) and 19,999 seeded draws.
fn relabelings(n: usize, m: usize, seed: u64, purpose: &str) -> (Vec<Vec<bool>>, bool) {
    if binomial(n + m, n) <= 20_000 {
        return (combinations(n + m, n), true);
    }
    let mut rng = Rng::new(seed).fork(purpose);
    let mut draws = vec![(0..n + m).map(|i| i < n).collect::<Vec<bool>>()];
    draws.extend((1..20_000).map(|_| {
        let picked = rng.permutation(n + m);
        let mut labels = vec![false; n + m];
        picked[..n].iter().for_each(|&i| labels[i] = true);
        labels
    }));
    (draws, false)
}

fn binomial(n: usize, k: usize) -> usize {
    (0..k).fold(1usize, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// Every way to mark `k` of `n` positions, as boolean vectors.
fn combinations(n: usize, k: usize) -> Vec<Vec<bool>> {
    fn extend(start: usize, n: usize, k: usize, current: &mut Vec<bool>, out: &mut Vec<Vec<bool>>) {
        if k == 0 {
            out.push(current.clone());
            return;
        }
        for i in start..=(n - k) {
            current[i] = true;
            extend(i + 1, n, k - 1, current, out);
            current[i] = false;
        }
    }
    let mut out = Vec::new();
    extend(0, n, k, &mut vec![false; n], &mut out);
    out
}

/// Sharing between two tasks over seeds: the overlap of the seed-matched pairs `(a_s, b_s)`
/// (matched by the `-s<seed>` suffix of their names; seeds only one task has are skipped),
/// mean with its 95 % interval. Raw overlap: the study's preprocessing needs three masks.
pub fn paired_sharing(a: &Replicates, b: &Replicates, metric: Overlap) -> Result<Interval> {
    let seed_of = |m: &Mask| m.name.rsplit_once("-s").map(|(_, s)| s.to_string());
    let values = a
        .masks
        .iter()
        .filter_map(|x| {
            let seed = seed_of(x)?;
            let y = b
                .masks
                .iter()
                .find(|y| seed_of(y).as_deref() == Some(seed.as_str()))?;
            Some((x, y))
        })
        .map(|(x, y)| {
            let pair = [x.clone(), y.clone()];
            Ok(sharing_matrix_with(&pair, metric, false, MixedSettings::Refuse)?.matrix[0][1])
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Interval::t95(&values))
}

/// Two groups of replicate values (one per seed) compared: their means with 95 % intervals and
/// an exact two-sided permutation test of the difference of means (every split of the pooled
/// values into groups of the same sizes when there are at most 20,000, else 20,000 seeded
/// draws). No normality is assumed; with few seeds the smallest attainable p says so.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeanComparison {
    /// What is compared (e.g. "Q").
    pub measure: String,
    /// The two groups' names.
    pub groups: (String, String),
    /// Mean and 95 % t interval of each group.
    pub intervals: (Interval, Interval),
    /// `mean(a) − mean(b)`.
    pub difference: f64,
    /// Two-sided p: `#{splits with |difference| ≥ observed} / #splits`, the observed split
    /// included.
    pub p: f64,
    /// Splits evaluated.
    pub relabelings: usize,
    /// Whether every split was enumerated.
    pub exact: bool,
    /// The smallest p the design can reach.
    pub smallest_possible_p: f64,
}

impl MeanComparison {
    /// The finding in words, decided by the test at `level`.
    pub fn verdict(&self, level: f64) -> String {
        let (a, b) = (&self.groups.0, &self.groups.1);
        let numbers = format!(
            "{} {a} {} vs {b} {}; permutation p = {}, {} splits{}",
            self.measure,
            self.intervals.0.summary(3),
            self.intervals.1.summary(3),
            p_text(self.p),
            self.relabelings,
            if self.exact { ", exact" } else { "" }
        );
        if self.p <= level {
            let direction = if self.difference > 0.0 {
                "higher"
            } else {
                "lower"
            };
            format!(
                "{a} has a significantly {direction} {} than {b} ({numbers})",
                self.measure
            )
        } else if self.smallest_possible_p > level {
            format!(
                "no significant difference in {} between {a} and {b} ({numbers}; with {} and \
                 {} seeds the smallest attainable p is {:.3} — more seeds are needed)",
                self.measure, self.intervals.0.n, self.intervals.1.n, self.smallest_possible_p
            )
        } else {
            format!(
                "no significant difference in {} between {a} and {b} ({numbers})",
                self.measure
            )
        }
    }
}

/// A p-value for a sentence: three decimals, or two significant digits below 0.001 (an exact
/// test's smallest p must not read as 0).
pub fn p_text(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// Compares the replicate values `a` and `b` of `measure` ([`MeanComparison`]); each group needs
/// at least two values.
pub fn compare_means(
    measure: &str,
    (a_name, a): (&str, &[f64]),
    (b_name, b): (&str, &[f64]),
    seed: u64,
) -> Result<MeanComparison> {
    let (n, m) = (a.len(), b.len());
    if n < 2 || m < 2 {
        return Err(Error::NotEnough(format!(
            "comparing {measure}: needs at least two seeds per group ({a_name}: {n}, {b_name}: {m})"
        )));
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let difference_of = |in_a: &[bool]| {
        let (mut sa, mut sb) = (0.0, 0.0);
        for (v, &ia) in pooled.iter().zip(in_a) {
            if ia {
                sa += v
            } else {
                sb += v
            }
        }
        sa / n as f64 - sb / m as f64
    };
    let observed_labels: Vec<bool> = (0..n + m).map(|i| i < n).collect();
    let difference = difference_of(&observed_labels);
    let total = binomial(n + m, n);
    let (labelings, exact) = relabelings(n, m, seed, "compare means");
    let tolerance = 1e-12 * pooled.iter().fold(1.0f64, |acc, v| acc.max(v.abs()));
    let at_least = labelings
        .iter()
        .filter(|l| difference_of(l).abs() >= difference.abs() - tolerance)
        .count();
    // Two-sided: a split and its mirror (when n = m) give ±difference, both counted.
    let smallest = match n == m {
        true => 2.0 / total as f64,
        false => 1.0 / total as f64,
    };
    Ok(MeanComparison {
        measure: measure.to_string(),
        groups: (a_name.to_string(), b_name.to_string()),
        intervals: (Interval::t95(a), Interval::t95(b)),
        difference,
        p: at_least as f64 / labelings.len() as f64,
        relabelings: labelings.len(),
        exact,
        smallest_possible_p: smallest.min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_matches_a_hand_computation() {
        // 1, 2, 3: mean 2, SD 1, half-width 4.303 / √3.
        let i = Interval::t95(&[1.0, 2.0, 3.0]);
        assert!((i.high - 2.0 - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert!(Interval::t95(&[5.0]).low.is_nan());
        assert!(Interval::t95(&[1.0, 2.0, 3.0]).excludes(7.0));
    }

    /// Against values computed independently (Python, `math.erfc`).
    #[test]
    fn the_jackknife_over_tasks_matches_a_hand_computation() {
        let pair = |a: &str, b: &str, v: f64| ((a.to_string(), b.to_string()), v);
        // ab = 1, ac = 2, bc = 3: mean 2; leaving a, b, c out gives 3, 2, 1; the standard
        // error is √(2/3 · 2) and t(0.975, 2) = 4.303.
        let i = jackknife_over_tasks(&[
            pair("a", "b", 1.0),
            pair("a", "c", 2.0),
            pair("b", "c", 3.0),
        ]);
        let half = 4.303 * (4.0f64 / 3.0).sqrt();
        assert_eq!((i.mean, i.n), (2.0, 3));
        assert!((i.high - 2.0 - half).abs() < 1e-12 && (2.0 - i.low - half).abs() < 1e-12);
        let alike = jackknife_over_tasks(&[
            pair("a", "b", 5.0),
            pair("a", "c", 5.0),
            pair("b", "c", 5.0),
        ]);
        assert_eq!((alike.low, alike.high), (5.0, 5.0));
    }

    #[test]
    fn a_negative_zero_reads_as_zero() {
        let tiny = Interval {
            mean: -1e-9,
            low: -0.01,
            high: 2e-3,
            n: 10,
        };
        assert_eq!(tiny.summary(1), "0.0 [0.0, 0.0] (n = 10)");
        assert_eq!(
            Interval::t95(&[-1.0, -2.0, -3.0])
                .summary(1)
                .split(' ')
                .next(),
            Some("-2.0")
        );
    }

    #[test]
    fn t_p_values_and_holm_match_reference_values() {
        // Student t tails (scipy, or Simpson integration of the density): 2 * t.sf(2, 10) = 0.07338803477074327; 2 * t.sf(1, 1) = 0.5;
        // 2 * t.sf(2.776445105, 4) = 0.05; 2 * t.sf(0.5, 30) = 0.620723.
        for (t, df, p) in [
            (2.0, 10, 0.073_388_034_770_743_27),
            (1.0, 1, 0.5),
            (-2.776_445_105, 4, 0.05),
            (0.5, 30, 0.620_723_004_885),
        ] {
            assert!(
                (t_two_sided_p(t, df) - p).abs() < 2e-7,
                "t = {t}, df = {df}"
            );
        }
        // The interval's own test: 1, 2, 3 has t = 2 / (1 / √3) = 3.4641 with 2 df: p = 0.07418.
        let p = Interval::t95(&[1.0, 2.0, 3.0]).t_test_p();
        assert!((p - 0.074_179_900_227_448_5).abs() < 1e-5, "{p}");
        // statsmodels multipletests([0.01, 0.04, 0.03], method='holm'): 0.03, 0.06, 0.06.
        let adjusted = holm_adjusted(&[0.01, 0.04, 0.03]);
        for (a, b) in adjusted.iter().zip([0.03, 0.06, 0.06]) {
            assert!((a - b).abs() < 1e-12, "{adjusted:?}");
        }
    }

    #[test]
    fn mcnemar_exact_matches_scipy_binomtest() {
        // scipy.stats.binomtest(3, 13).pvalue = 0.09228515625; binomtest(0, 10) = 0.001953125.
        let outcomes = |only_a: usize, only_b: usize, both: usize| {
            let a: Vec<bool> = (0..only_a + only_b + both)
                .map(|i| i < only_a || i >= only_a + only_b)
                .collect();
            let b: Vec<bool> = (0..only_a + only_b + both).map(|i| i >= only_a).collect();
            (a, b)
        };
        let (a, b) = outcomes(3, 10, 50);
        let test = mcnemar_exact(&a, &b).unwrap();
        assert_eq!((test.only_a, test.only_b), (3, 10));
        assert!((test.p - 0.09228515625).abs() < 1e-12, "{test:?}");
        let (a, b) = outcomes(10, 0, 5);
        assert!((mcnemar_exact(&a, &b).unwrap().p - 0.001953125).abs() < 1e-12);
        // No discordant problem, or an even split: no evidence at all.
        let (a, b) = outcomes(0, 0, 7);
        assert_eq!(mcnemar_exact(&a, &b).unwrap().p, 1.0);
        let (a, b) = outcomes(4, 4, 0);
        assert_eq!(mcnemar_exact(&a, &b).unwrap().p, 1.0);
        assert!(mcnemar_exact(&a, &b[1..]).is_none());
    }

    #[test]
    fn two_proportion_test_matches_a_reference() {
        let (z, p) = two_proportion_test((175, 200), (120, 200));
        assert!((z - 6.250100887).abs() < 1e-6 && (p / 4.101876e-10 - 1.0).abs() < 1e-5);
        let (z, p) = two_proportion_test((95, 200), (100, 200));
        assert!((z + 0.500156323).abs() < 1e-6 && (p - 0.61696501).abs() < 1e-6);
        assert_eq!(two_proportion_test((0, 10), (0, 10)), (0.0, 1.0));
    }

    #[test]
    fn task_names_lose_only_a_seed_suffix() {
        assert_eq!(task_of("squares-s12"), "squares");
        assert_eq!(task_of("SCL_90/squares"), "SCL_90/squares");
        assert_eq!(task_of("big-shapes"), "big-shapes");
        assert_eq!(seed_of("squares-s12"), "s12");
        assert_eq!(seed_of("all-shapes-s0"), "s0");
        assert_eq!(seed_of("big-shapes"), "");
        assert_eq!(seed_of("squares-s"), "");
        assert_eq!(combinations(4, 2).len(), 6);
        assert_eq!(binomial(8, 4), 70);
    }

    /// Five tasks × two seeds where replicates share 90 % and tasks 60 %: only the observed
    /// grouping reaches the difference, so p is the design's smallest: 5! of the (5!)² labellings
    /// within the seeds regroup the masks as observed, 1 / 120.
    #[test]
    fn pooling_the_tasks_gives_the_replicate_test_its_power() {
        let tasks = ["a", "b", "c", "d", "e"];
        let names: Vec<String> = tasks
            .iter()
            .flat_map(|t| [format!("{t}-s0"), format!("{t}-s1")])
            .collect();
        let matrix: Vec<Vec<f64>> = (0..10)
            .map(|i| {
                (0..10)
                    .map(|j| match (i == j, i / 2 == j / 2) {
                        (true, _) => 100.0,
                        (false, true) => 90.0,
                        (false, false) => 60.0 + ((i + j) % 3) as f64,
                    })
                    .collect()
            })
            .collect();
        let t = pooled_replicate_test(&names, &matrix, 0).unwrap();
        assert_eq!((t.relabelings, t.exact), (14_400, true));
        assert!((t.smallest_possible_p - 1.0 / 120.0).abs() < 1e-12);
        assert!((t.p - 1.0 / 120.0).abs() < 1e-12, "{}", t.p);
        // Every labelling keeps two masks of one task on different seeds.
        let (all, _) = labellings(&[0, 0, 1, 1, 2, 2], &[0, 1, 0, 1, 0, 1], 0);
        assert_eq!(all.len(), 36);
        assert!(all
            .iter()
            .all(|l| l[0] != l[2] && l[0] != l[4] && l[1] != l[3]));
        assert_eq!(t.pairs_within_above, (10, 10));
        assert!(t
            .verdict(0.05, "IoMin")
            .starts_with("Two masks of different tasks share"));
        // Replicates that share no more than tasks: no finding.
        let flat: Vec<Vec<f64>> = (0..10)
            .map(|i| (0..10).map(|j| if i == j { 100.0 } else { 70.0 }).collect())
            .collect();
        let none = pooled_replicate_test(&names, &flat, 0).unwrap();
        assert_eq!(none.p, 1.0);
        assert!(none
            .verdict(0.05, "IoMin")
            .starts_with("No significant difference"));
        // One seed of a task: refused.
        assert!(pooled_replicate_test(&names[..9], &matrix[..9], 0).is_err());
    }

    #[test]
    fn mean_comparison_is_exact_two_sided_and_says_when_seeds_are_too_few() {
        let a = [0.30, 0.31, 0.29, 0.32, 0.30];
        let b = [0.01, 0.02, 0.015, 0.012, 0.018];
        let c = compare_means("Q", ("patched", &a), ("direct", &b), 0).unwrap();
        // All 252 splits; only the observed split and its mirror reach |difference|.
        assert_eq!((c.relabelings, c.exact), (252, true));
        assert!((c.p - 2.0 / 252.0).abs() < 1e-12, "{}", c.p);
        assert!(c
            .verdict(0.05)
            .starts_with("patched has a significantly higher Q"));
        let same = compare_means("Q", ("x", &a), ("y", &a), 0).unwrap();
        assert_eq!(same.p, 1.0);
        assert!(same
            .verdict(0.05)
            .starts_with("no significant difference in Q"));
        let two = compare_means("Q", ("x", &a[..2]), ("y", &b[..2]), 0).unwrap();
        assert!(
            two.verdict(0.05).contains("more seeds are needed"),
            "{}",
            two.verdict(0.05)
        );
        assert!(compare_means("Q", ("x", &a[..1]), ("y", &b), 0).is_err());
    }
}
