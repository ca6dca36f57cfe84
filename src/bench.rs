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
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            0.5 * (s[n / 2 - 1] + s[n / 2])
        }
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
