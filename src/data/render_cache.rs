//! Generated problems kept in memory at the size a model reads them.
//!
//! A dataset generated on the fly (`avr generate --on-the-fly`) renders every problem each time a
//! batch needs it (≈ 1.4 ms of one core at 160 px, then a 160 → 80 px reduction), and a study
//! mask draws each problem of its shape set ~70 times. Rendering is a pure function of the
//! problem's recipe, so the first rendering is kept here, reduced to what a batch needs: the sums
//! of every `f × f` pixel block (u16, exact), a quarter of the 160 px bytes at 80 px. A batch
//! made from these sums is bit-identical to one made from the rendered pixels: the same integer
//! sums are scaled by the same factor.
//!
//! The cache is per process and bounded: `AVR_RENDER_CACHE_MB` (default 4096; 0 turns it off).
//! Once full it keeps what it has and renders the rest each time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use super::dataset::ProblemRecipe;

/// Default memory bound of the cache, in MiB (a study shape set at 80 px takes ≈ 0.9 GiB).
pub const DEFAULT_RENDER_CACHE_MB: usize = 4096;

/// The largest block side whose sums fit a u16 (255 · 16² = 65,280).
pub const MAX_FACTOR: usize = 16;

/// One problem reduced for a batch: block sums `(16, side / f, side / f)` and the answer.
#[derive(Debug)]
pub struct BlockSums {
    /// Sum of each `f × f` block of each panel's u8 pixels (at most 1,020 at f = 2).
    pub sums: Vec<u16>,
    /// The side of the rendered panels.
    pub source_side: usize,
    /// The block side `f`.
    pub factor: usize,
    /// Index of the correct candidate.
    pub target: i64,
}

/// What identifies a reduced problem: its recipe, configuration and the side it is reduced to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenderKey {
    /// How the problem is generated.
    pub recipe: ProblemRecipe,
    /// Its configuration folder.
    pub configuration: String,
    /// The side its panels are reduced to.
    pub side: usize,
}

struct RenderCache {
    entries: Mutex<HashMap<RenderKey, Arc<BlockSums>>>,
    bytes: AtomicUsize,
    budget: usize,
}

static CACHE: LazyLock<RenderCache> = LazyLock::new(|| RenderCache {
    entries: Mutex::new(HashMap::new()),
    bytes: AtomicUsize::new(0),
    budget: budget_bytes(),
});

fn budget_bytes() -> usize {
    let mb = std::env::var("AVR_RENDER_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_RENDER_CACHE_MB);
    mb.saturating_mul(1 << 20)
}

/// The kept reduction of `key`, if any.
pub fn get(key: &RenderKey) -> Option<Arc<BlockSums>> {
    if CACHE.budget == 0 {
        return None;
    }
    let entries = CACHE.entries.lock().unwrap_or_else(|e| e.into_inner());
    entries.get(key).cloned()
}

/// Keeps `value` for `key` while the budget allows; returns it either way.
pub fn keep(key: RenderKey, value: BlockSums) -> Arc<BlockSums> {
    let value = Arc::new(value);
    let size = value.sums.len() * std::mem::size_of::<u16>();
    let fits = CACHE
        .bytes
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            (used + size <= CACHE.budget).then_some(used + size)
        })
        .is_ok();
    if fits {
        let mut entries = CACHE.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.insert(key, value.clone()).is_some() {
            // Two threads rendered the same problem: the second copy replaced an equal one.
            CACHE.bytes.fetch_sub(size, Ordering::Relaxed);
        }
    }
    value
}

/// Problems kept and the bytes they take (for benchmarks and tests).
pub fn usage() -> (usize, usize) {
    let entries = CACHE.entries.lock().unwrap_or_else(|e| e.into_inner());
    (entries.len(), CACHE.bytes.load(Ordering::Relaxed))
}

/// Adds the sums of each `f × f` block of every panel in `pixels` (`16 × side²` u8) to `dst`
/// (`16 × (side / f)²`, zeroed): u16 holds them for `f ≤ MAX_FACTOR`, u32 for any `f`.
pub fn block_sums<T: From<u8> + std::ops::AddAssign + Copy>(
    pixels: &[u8],
    side: usize,
    f: usize,
    dst: &mut [T],
) {
    let r = side / f;
    for (panel, out) in pixels
        .chunks_exact(side * side)
        .zip(dst.chunks_exact_mut(r * r))
    {
        for y in 0..side {
            let row = &panel[y * side..(y + 1) * side];
            let out_row = &mut out[(y / f) * r..(y / f + 1) * r];
            for (x, &v) in row.iter().enumerate() {
                out_row[x / f] += T::from(v);
            }
        }
    }
}
