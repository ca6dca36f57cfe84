//! Timing of repeated training steps for `avr bench train|mask`.
//!
//! The development machine is a shared VM whose speed drifts by ±20 % from one minute to the
//! next; a mean over steps absorbs every stall into the figure. The benches therefore time each
//! step and report the median step as the headline (robust to stalls) beside the mean.

use serde::Serialize;

use tch::Tensor;

use crate::optim::{AdamW, Flow, TrainStep};
use crate::Result;

/// Per-step wall times of a benchmark, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct StepTimes {
    /// Problems per step.
    pub batch: usize,
    /// Wall time of each timed step.
    pub seconds: Vec<f64>,
}

impl StepTimes {
    /// Runs `warmup` untimed steps, then times `steps` calls of `step` one by one.
    pub fn measure(
        batch: usize,
        warmup: usize,
        steps: usize,
        mut step: impl FnMut() -> Result<()>,
    ) -> Result<StepTimes> {
        for _ in 0..warmup {
            step()?;
        }
        let mut seconds = Vec::with_capacity(steps);
        for _ in 0..steps.max(1) {
            let start = std::time::Instant::now();
            step()?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        Ok(StepTimes { batch, seconds })
    }

    /// The median step time.
    pub fn median(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        median_of_sorted(&s)
    }

    /// Problems per second at the median step time (the headline figure).
    pub fn problems_per_s(&self) -> f64 {
        self.batch as f64 / self.median()
    }

    /// Problems per second over all timed steps together.
    pub fn problems_per_s_mean(&self) -> f64 {
        (self.batch * self.seconds.len()) as f64 / self.seconds.iter().sum::<f64>()
    }
}

/// A [`TrainStep`] whose loss comes from a function, timed step by step: the benches run the
/// very loop the trainers run ([`crate::optim::optimise`]) and time each iteration.
pub struct Timed<F> {
    batch: usize,
    warmup: usize,
    loss: F,
    started: Option<std::time::Instant>,
    seconds: Vec<f64>,
}

impl<F: FnMut(usize) -> Result<Tensor>> Timed<F> {
    /// Times every step after `warmup` untimed ones; `batch` problems per step.
    pub fn new(batch: usize, warmup: usize, loss: F) -> Self {
        Timed {
            batch,
            warmup,
            loss,
            started: None,
            seconds: Vec::new(),
        }
    }

    /// The per-step times measured so far.
    pub fn times(&self) -> StepTimes {
        StepTimes {
            batch: self.batch,
            seconds: self.seconds.clone(),
        }
    }
}

impl<F: FnMut(usize) -> Result<Tensor>> TrainStep for Timed<F> {
    fn loss(&mut self, step: usize) -> Result<Tensor> {
        self.started = Some(std::time::Instant::now());
        (self.loss)(step)
    }

    fn after_update(&mut self, step: usize, _loss: f64, _opt: &AdamW) -> Result<Flow> {
        let first = *self.started.get_or_insert_with(std::time::Instant::now);
        // Steps are numbered from 1; the first `warmup` are not timed.
        if step > self.warmup {
            self.seconds.push(first.elapsed().as_secs_f64());
        }
        Ok(Flow::Continue)
    }
}

// --- The roofline's peak: this CPU's measured GEMM throughput (the work per problem and the
// per-stage timings are `model::flops`) ---

/// Measured matrix-multiply throughput: the practical FP32 (or bf16) peak of this CPU.
#[derive(Debug, Clone, Serialize)]
pub struct GemmPeak {
    /// `"f32"` or `"bf16"`.
    pub kind: String,
    /// Square size n of the `n × n · n × n` product.
    pub n: i64,
    /// libtorch threads.
    pub threads: i32,
    /// Median over the timed products, in GFLOP/s (2n³ per product).
    pub gflops: f64,
}

/// Times `reps` products of two `n × n` matrices in `kind` after two warm-ups.
pub fn gemm_peak(n: i64, kind: tch::Kind, reps: usize) -> Result<GemmPeak> {
    let opts = (kind, tch::Device::Cpu);
    let (a, b) = (Tensor::randn([n, n], opts), Tensor::randn([n, n], opts));
    let times = StepTimes::measure(1, 2, reps, || {
        let _ = a.f_matmul(&b)?;
        Ok(())
    })?;
    Ok(GemmPeak {
        kind: format!("{kind:?}").to_lowercase(),
        n,
        threads: tch::get_num_threads(),
        gflops: 2.0 * (n as f64).powi(3) / times.median() / 1e9,
    })
}

/// Measured memory bandwidth: the roofline's other roof, which bounds the layers that do few
/// operations per byte (the first convolution block of the official SCL).
#[derive(Debug, Clone, Serialize)]
pub struct Bandwidth {
    /// `"read"` (a sum over the buffer: bytes read once) or `"copy"` (read once, written once).
    pub pattern: String,
    /// Size of the buffer read, in MB (far above the caches).
    pub megabytes: f64,
    /// libtorch threads.
    pub threads: i32,
    /// Median over the timed passes, in GB/s of bytes moved.
    pub gb_per_s: f64,
}

/// Times `reps` passes of a read (`sum`) and of a copy (`copy_`) over an f32 buffer of
/// `megabytes` MB, after two warm-ups each. A copy moves twice the buffer (read + write).
pub fn memory_bandwidth(megabytes: usize, reps: usize) -> Result<Vec<Bandwidth>> {
    let opts = (tch::Kind::Float, tch::Device::Cpu);
    let elements = (megabytes * 1_000_000 / 4) as i64;
    let source = Tensor::randn([elements], opts);
    let mut target = Tensor::zeros([elements], opts);
    let bytes = (elements * 4) as f64;
    let read = StepTimes::measure(1, 2, reps, || {
        let _ = source.f_sum(tch::Kind::Float)?;
        Ok(())
    })?;
    let copy = StepTimes::measure(1, 2, reps, || {
        target.f_copy_(&source)?;
        Ok(())
    })?;
    let figure = |pattern: &str, times: &StepTimes, moved: f64| Bandwidth {
        pattern: pattern.into(),
        megabytes: bytes / 1e6,
        threads: tch::get_num_threads(),
        gb_per_s: moved / times.median() / 1e9,
    };
    Ok(vec![
        figure("read", &read, bytes),
        figure("copy", &copy, 2.0 * bytes),
    ])
}

// --- A kernel's worth in one process: the VM's drift moves separate processes apart by more
// than one kernel gains, so the two sides of a switch alternate round by round instead ---

/// A hand-written kernel of the official SCL's training step (or the flat AdamW update) that
/// its environment variable turns off (`"0"`: libtorch's path), read at each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KernelSwitch {
    /// The first conv block (`model::fused`, `AVR_FUSED_FIRST_BLOCK`).
    FirstBlock,
    /// The relation experts' MLPs (`model::fused_experts`, `AVR_FUSED_EXPERTS`).
    Experts,
    /// AdamW on flat buffers (`optim::AdamW`, `AVR_FLAT_ADAM`).
    FlatAdam,
}

impl KernelSwitch {
    /// The environment variable that turns the kernel off.
    pub fn variable(self) -> &'static str {
        match self {
            KernelSwitch::FirstBlock => "AVR_FUSED_FIRST_BLOCK",
            KernelSwitch::Experts => "AVR_FUSED_EXPERTS",
            KernelSwitch::FlatAdam => "AVR_FLAT_ADAM",
        }
    }

    /// Whether the kernel acts in a mask-training step: only the experts' does (the first
    /// block's needs train-mode BatchNorm, and a mask's one flat leaf is never packed).
    pub fn acts_in_mask_steps(self) -> bool {
        self == KernelSwitch::Experts
    }

    /// Whether the kernel acts in a bf16 training step: all but the experts' do (the rule is
    /// `model::fused_experts::acts_in`; `bench` sits below `model` and cannot read it).
    pub fn acts_in_bf16_steps(self) -> bool {
        self != KernelSwitch::Experts
    }
}

/// One round of [`compare_switch`]: the median step with the kernel on and off.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SwitchRound {
    /// Median step time with the kernel, in seconds.
    pub on_s: f64,
    /// Median step time without it (libtorch's path), in seconds.
    pub off_s: f64,
}

/// A kernel against libtorch's path, round by round in one process.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchComparison {
    /// The kernel's environment variable.
    pub variable: String,
    /// Every round, in order.
    pub rounds: Vec<SwitchRound>,
    /// Median over the rounds of `off_s / on_s`: above 1, the kernel makes the step faster.
    pub median_speedup: f64,
    /// A distribution-free interval of at least 95 % for that median ([`median_interval`]);
    /// `None` below 6 rounds.
    pub median_interval_95: Option<(f64, f64)>,
    /// Rounds in which the kernel's side was faster.
    pub on_faster: usize,
    /// Exact two-sided sign test of "either side is as likely to be faster" (ties dropped).
    pub sign_test_p: f64,
}

impl std::fmt::Display for SwitchComparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| round | with the kernel, ms | {}=0, ms | speed-up |",
            self.variable
        )?;
        writeln!(f, "|---|---|---|---|")?;
        for (i, r) in self.rounds.iter().enumerate() {
            let (on, off) = (r.on_s * 1e3, r.off_s * 1e3);
            writeln!(
                f,
                "| {} | {on:.1} | {off:.1} | {:.3} |",
                i + 1,
                r.off_s / r.on_s
            )?;
        }
        let interval = match self.median_interval_95 {
            Some((lo, hi)) => format!(" (95 % interval {lo:.3}–{hi:.3})"),
            None => String::new(),
        };
        write!(
            f,
            "median speed-up {:.3}{interval} over n = {} rounds; the kernel faster in {} \
             (sign test p = {:.3})",
            self.median_speedup,
            self.rounds.len(),
            self.on_faster,
            self.sign_test_p
        )
    }
}

/// `rounds` rounds of `median_step` with the kernel on and off, the order alternating (on
/// first in odd rounds, off first in even ones) so that a drift favours neither side, after
/// one untimed run (the process's first model and kernels). The variable's own value is
/// restored afterwards.
///
/// The variable is set while the process may run libtorch's threads; they do not read the
/// environment while a step runs, and nothing else here does.
pub fn compare_switch(
    switch: KernelSwitch,
    rounds: usize,
    mut median_step: impl FnMut() -> Result<f64>,
) -> Result<SwitchComparison> {
    let variable = switch.variable();
    let before = std::env::var_os(variable);
    let set = |on: bool| std::env::set_var(variable, if on { "1" } else { "0" });
    median_step()?;
    let measured = measure_rounds(rounds, set, median_step);
    match before {
        Some(v) => std::env::set_var(variable, v),
        None => std::env::remove_var(variable),
    }
    Ok(comparison(variable, measured?))
}

/// `(on, off)` median steps per round, `set` switching the kernel on or off before each run.
fn measure_rounds(
    rounds: usize,
    mut set: impl FnMut(bool),
    mut median_step: impl FnMut() -> Result<f64>,
) -> Result<Vec<(f64, f64)>> {
    let mut timed = |on: bool| {
        set(on);
        median_step()
    };
    (0..rounds)
        .map(|i| {
            if i % 2 == 0 {
                let on = timed(true)?;
                Ok((on, timed(false)?))
            } else {
                let off = timed(false)?;
                Ok((timed(true)?, off))
            }
        })
        .collect()
}

/// The rounds' summary: median speed-up, wins, sign test.
fn comparison(variable: &str, measured: Vec<(f64, f64)>) -> SwitchComparison {
    let rounds: Vec<SwitchRound> = (measured.into_iter())
        .map(|(on_s, off_s)| SwitchRound { on_s, off_s })
        .collect();
    let speedups: Vec<f64> = rounds.iter().map(|r| r.off_s / r.on_s).collect();
    // Speed-ups against 1 are ratios against a target: the same median, interval and counts.
    let s = RatioSummary::new(&speedups, 1.0);
    SwitchComparison {
        variable: variable.into(),
        median_speedup: s.median,
        median_interval_95: s.median_interval_95,
        on_faster: s.above,
        sign_test_p: sign_test_p(s.above, s.above + s.below),
        rounds,
    }
}

fn median_of_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Exact two-sided sign test: `P(|K − n/2| ≥ |k − n/2|)` for `K ~ Binomial(n, ½)`.
pub fn sign_test_p(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    (2.0 * binomial_half_cdf(k.min(n - k), n)).min(1.0)
}

/// Exact one-sided sign test: `P(K ≥ k)` for `K ~ Binomial(n, ½)` (1 for `k = 0`).
pub fn sign_test_above_p(k: usize, n: usize) -> f64 {
    match k {
        0 => 1.0,
        k => (1.0 - binomial_half_cdf(k - 1, n)).max(0.0),
    }
}

// --- A target judged run by run: paired ratios (ours ÷ the anchor that ran beside it) ---

/// Paired ratios against a target: their median with its interval, how many runs are above
/// and below, and the one-sided sign test of "above the target" (`make bench`'s targets table).
#[derive(Debug, Clone, Serialize)]
pub struct RatioSummary {
    /// The target ratio.
    pub target: f64,
    /// The runs' ratios, in the order given.
    pub ratios: Vec<f64>,
    /// Their median.
    pub median: f64,
    /// A distribution-free interval of at least 95 % for the median ([`median_interval`]);
    /// `None` below 6 runs.
    pub median_interval_95: Option<(f64, f64)>,
    /// Runs above the target.
    pub above: usize,
    /// Runs below it (ties count as neither).
    pub below: usize,
    /// `P(K ≥ above)`, `K ~ Binomial(above + below, ½)`: the chance of so many runs above if
    /// each were as likely below ([`sign_test_above_p`]).
    pub sign_test_above_p: f64,
}

impl RatioSummary {
    /// The summary of `ratios` against `target`.
    pub fn new(ratios: &[f64], target: f64) -> Self {
        let mut sorted = ratios.to_vec();
        sorted.sort_by(f64::total_cmp);
        let above = ratios.iter().filter(|&&r| r > target).count();
        let below = ratios.iter().filter(|&&r| r < target).count();
        RatioSummary {
            target,
            ratios: ratios.to_vec(),
            median: median_of_sorted(&sorted),
            median_interval_95: median_interval(&sorted, 0.95),
            above,
            below,
            sign_test_above_p: sign_test_above_p(above, above + below),
        }
    }
}

/// `P(K ≤ k)` for `K ~ Binomial(n, ½)`: each term `C(n, i)/2ⁿ` from its logarithm (2ⁿ
/// overflows f64 from n = 1024).
fn binomial_half_cdf(k: usize, n: usize) -> f64 {
    let mut log_term = -(n as f64) * std::f64::consts::LN_2;
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            log_term += ((n - i + 1) as f64 / i as f64).ln();
        }
        sum += log_term.exp();
    }
    sum.min(1.0)
}

/// The distribution-free interval for the median of `sorted` (ascending) from its order
/// statistics: `[x₍ₖ₎, x₍ₙ₊₁₋ₖ₎]` (1-based) with the largest k whose coverage
/// `1 − 2·P(K ≤ k − 1)`, `K ~ Binomial(n, ½)`, is at least `level`; `None` when even the
/// range covers less (below 6 values for 95 %).
pub fn median_interval(sorted: &[f64], level: f64) -> Option<(f64, f64)> {
    let n = sorted.len();
    let covers = |k: usize| 1.0 - 2.0 * binomial_half_cdf(k - 1, n) >= level;
    let k = (1..=n.div_ceil(2)).take_while(|&k| covers(k)).last()?;
    Some((sorted[k - 1], sorted[n - k]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_test_gives_the_binomial_tails() {
        assert!((sign_test_p(8, 8) - 2.0 / 256.0).abs() < 1e-12);
        assert!((sign_test_p(3, 12) - 2.0 * 299.0 / 4096.0).abs() < 1e-12);
        assert!((sign_test_p(9, 12) - sign_test_p(3, 12)).abs() < 1e-12);
        assert_eq!(sign_test_p(6, 12), 1.0);
        assert_eq!(sign_test_p(0, 0), 1.0);
    }

    #[test]
    fn the_median_interval_takes_the_order_statistics_of_its_coverage() {
        let v: Vec<f64> = (1..=12).map(f64::from).collect();
        // n = 12: P(K ≤ 2) = 79/4096, coverage 0.961; P(K ≤ 3) = 299/4096 would give 0.854.
        assert_eq!(median_interval(&v, 0.95), Some((3.0, 10.0)));
        assert_eq!(median_interval(&v[..6], 0.95), Some((1.0, 6.0)));
        assert_eq!(
            median_interval(&v[..5], 0.95),
            None,
            "the range covers 0.9375"
        );
        assert_eq!(median_interval(&[], 0.95), None);
    }

    #[test]
    fn the_one_sided_sign_test_gives_the_upper_tail() {
        assert!((sign_test_above_p(8, 8) - 1.0 / 256.0).abs() < 1e-12);
        assert!((sign_test_above_p(7, 7) - 1.0 / 128.0).abs() < 1e-12);
        // 5 of 7: (C(7,5) + C(7,6) + C(7,7)) / 128 = 29/128.
        assert!((sign_test_above_p(5, 7) - 29.0 / 128.0).abs() < 1e-12);
        assert_eq!(sign_test_above_p(0, 7), 1.0);
        assert_eq!(sign_test_above_p(0, 0), 1.0);
    }

    #[test]
    fn a_ratio_summary_counts_the_runs_on_each_side_of_the_target() {
        // Round D of BENCHMARKS.md's fourth sitting: 5 of 7 above 2, median 2.07.
        let d = [2.26, 2.29, 2.05, 1.60, 1.83, 2.07, 2.36];
        let s = RatioSummary::new(&d, 2.0);
        assert_eq!((s.above, s.below), (5, 2));
        assert_eq!(s.median, 2.07);
        assert!((s.sign_test_above_p - 29.0 / 128.0).abs() < 1e-12);
        assert_eq!(s.median_interval_95, Some((1.60, 2.36)), "n = 7: the range");
        let tie = RatioSummary::new(&[2.0, 2.5, 1.5], 2.0);
        assert_eq!((tie.above, tie.below), (1, 1), "a tie counts as neither");
        assert_eq!(tie.median_interval_95, None);
    }

    #[test]
    fn the_sign_test_stays_finite_for_many_rounds() {
        let p = sign_test_p(600, 2000);
        assert!(p > 0.0 && p < 1e-60, "{p}");
        assert_eq!(sign_test_p(1000, 2000), 1.0);
    }

    #[test]
    fn a_switch_comparison_alternates_the_sides() {
        // No environment variable: the library's tests run side by side in one process.
        let on = std::cell::Cell::new(true);
        let mut order = Vec::new();
        let measured = measure_rounds(
            5,
            |v| on.set(v),
            || {
                order.push(on.get());
                Ok(if on.get() { 0.10 } else { 0.12 })
            },
        )
        .unwrap();
        assert_eq!(
            order,
            [true, false, false, true, true, false, false, true, true, false]
        );
        let c = comparison("AVR_SOME_KERNEL", measured);
        assert!((c.median_speedup - 1.2).abs() < 1e-12 && c.on_faster == 5);
        assert!((c.sign_test_p - 2.0 / 32.0).abs() < 1e-12);
        assert_eq!(c.median_interval_95, None, "5 rounds are too few for 95 %");
        assert!(c.to_string().contains("faster in 5"), "{c}");
    }
}
