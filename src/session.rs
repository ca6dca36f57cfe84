//! Session set-up for notebooks and the CLI: one seed, the compute device, and the run size.
//!
//! Mirrors TransformerLens' `set_seed_everywhere`: a single seed drives libtorch's generator
//! and every Rust-side RNG that later stages derive from it.

use serde::{Deserialize, Serialize};
use tch::Device;

/// How big a notebook or demo run is. Chosen by the `AVR_SMOKE` environment variable so the
/// same notebooks run in CI (tiny) and for users (the study's sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunSize {
    /// Tiny data and few steps: minutes on a 2-core CI machine (`AVR_SMOKE=1`).
    Smoke,
    /// The real study sizes (a GPU or a long CPU run).
    Full,
}

impl RunSize {
    /// `Smoke` when `AVR_SMOKE` is set to anything but `""`/`0`, else `Full`.
    pub fn from_env() -> Self {
        match std::env::var("AVR_SMOKE") {
            Ok(v) if !v.is_empty() && v != "0" => RunSize::Smoke,
            _ => RunSize::Full,
        }
    }

    /// Picks `smoke` or `full` according to the run size.
    pub fn pick<T>(self, smoke: T, full: T) -> T {
        match self {
            RunSize::Smoke => smoke,
            RunSize::Full => full,
        }
    }
}

/// What [`setup`] configured; shown in notebooks and stored in sidecars.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The one seed.
    pub seed: u64,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// libtorch's intra-op threads.
    pub threads: i32,
    /// Smoke (CI) or full size.
    pub run_size: RunSize,
    /// This crate's version.
    pub crate_version: String,
}

/// Seeds libtorch, sets the thread count and picks CUDA when present.
///
/// Threads default to the machine's cores; `AVR_THREADS` overrides. Results are bit-identical
/// for the same thread count on the same [`simd_level`]: the count and libtorch's kernels for
/// the CPU's vector width both set the order of float reductions.
pub fn setup(seed: u64) -> Session {
    keep_freed_memory();
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
    let threads = std::env::var("AVR_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(1)
        });
    tch::set_num_threads(threads);
    Session {
        seed,
        device: device_name(default_device()),
        threads,
        run_size: RunSize::from_env(),
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Every training step allocates and frees the same large activation tensors. glibc returns
/// big blocks to the OS on free (mmap/trim), so each step page-faults them back in — measured
/// as ~15 % of CPU time in kernel page clearing. Keeping freed memory in the heap avoids that.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tuning parameters; called before heavy use.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 1 << 30);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// The widest vector instructions this CPU offers to libtorch's kernels (`avx512_bf16`,
/// `avx512f`, `avx2`, `sse4.2`, else the architecture): oneDNN and MKL pick their kernels by it,
/// so two machines of different levels differ in the last bits of the same computation.
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bf16") {
            return "avx512_bf16";
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
        if std::arch::is_x86_feature_detected!("sse4.2") {
            return "sse4.2";
        }
    }
    std::env::consts::ARCH
}

/// CUDA when available, else CPU.
pub fn default_device() -> Device {
    Device::cuda_if_available()
}

/// A short human-readable device name (`cpu`, `cuda:0`).
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl Session {
    /// Inline display in evcxr: a one-line summary.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n<code>avr-modularity {} · seed {} · {} · {} threads · {:?} run</code>\nEVCXR_END_CONTENT",
            self.crate_version, self.seed, self.device, self.threads, self.run_size
        );
    }
}

static PROGRESS_TO_STDERR: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Sends progress lines to stderr instead of stdout. The CLI does this so that `--json` output
/// on stdout stays clean; notebooks keep stdout, because Jupyter paints stderr as red blocks.
pub fn progress_to_stderr(on: bool) {
    PROGRESS_TO_STDERR.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// One progress line, replacing the previous one in place (carriage return); [`progress_done`]
/// ends it. One line per update instead with `AVR_PROGRESS=lines`, and for the CLI when its
/// stderr is a file.
pub fn progress(line: &str) {
    match progress_as_lines() {
        true => write_progress(&format!("{line}\n")),
        false => write_progress(&format!("\r{line:<110}")),
    }
}

/// Ends the current progress line.
pub fn progress_done() {
    if !progress_as_lines() {
        write_progress("\n");
    }
}

/// One line per update: asked for (`AVR_PROGRESS=lines`), or the CLI writing to a log file
/// (stderr not a terminal), where carriage returns would run the updates together.
fn progress_as_lines() -> bool {
    use std::io::IsTerminal as _;
    std::env::var("AVR_PROGRESS").is_ok_and(|v| v == "lines")
        || (PROGRESS_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed)
            && !std::io::stderr().is_terminal())
}

/// Writes progress text to its stream (stdout is flushed: it is line-buffered in evcxr).
fn write_progress(text: &str) {
    use std::io::Write as _;
    if PROGRESS_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        let mut out = std::io::stdout();
        let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    }
}
